//! The device's own timestamp of a message: a user property `ts`, or a top-level `"ts"` number
//! in a JSON object payload; unix milliseconds, or seconds when below 10^11.
//!
//! Every forwarder (for its device-latency histogram) and the archive (for its `device_time`
//! column) ask this of every message, so the JSON case is one pass over the bytes instead of a
//! serde parse (which checked every key and value: about a tenth of the archive's CPU, see
//! docs/BENCHMARKS.md). It answers as `serde_json` would for `{ ts: Option<f64> }`: nothing for
//! an object that does not close, a `ts` twice, a `ts` that is not a number, or bytes after the
//! object. What it does not check, as serde would: the UTF-8 and control characters inside
//! strings and the grammar of the other values (a malformed payload that serde would refuse can
//! still give its `ts`); and a key spelled with escapes (`"t\u0073"`) is not `ts`.

use crate::record::Record;

/// The device's timestamp of a message, in unix milliseconds, if it carries one.
pub fn device_timestamp_ms(r: &Record) -> Option<u64> {
    let from_property = r.user_properties.iter().find(|(k, _)| k == "ts").and_then(|(_, v)| v.trim().parse::<f64>().ok());
    let value = from_property.or_else(|| if r.payload.len() > 64 * 1024 { None } else { json_ts(&r.payload) })?;
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    Some(if value < 1e11 { (value * 1000.0) as u64 } else { value as u64 })
}

/// The number under the top-level key `ts` of a JSON object (`null` and no `ts`: none).
fn json_ts(p: &[u8]) -> Option<f64> {
    let mut s = Scan { p, i: 0 };
    s.expect(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        return None;
    }
    let mut ts: Option<Option<f64>> = None;
    loop {
        s.ws();
        let key = s.string()?;
        s.ws();
        s.expect(b':')?;
        s.ws();
        if key == b"ts" {
            if ts.is_some() {
                return None; // serde: duplicate field
            }
            ts = Some(s.number_or_null()?);
        } else {
            s.value()?;
        }
        s.ws();
        match s.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    s.ws();
    (s.i == p.len()).then_some(())?;
    ts.flatten()
}

struct Scan<'a> {
    p: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.p.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string's raw bytes between its quotes (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let (p, start) = (self.p, self.i);
        loop {
            let at = self.i + memchr::memchr2(b'"', b'\\', &p[self.i..])?;
            if p[at] == b'"' {
                self.i = at + 1;
                return Some(&p[start..at]);
            }
            // A backslash: the byte after it is part of the string.
            if at + 2 > p.len() {
                return None;
            }
            self.i = at + 2;
        }
    }

    /// Any value: a string, an object or array (brackets counted, strings skipped), or a scalar.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.i += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
            _ => {
                let start = self.i;
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    /// `null`, or a number in JSON's grammar.
    fn number_or_null(&mut self) -> Option<Option<f64>> {
        if self.p[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
        }
        // ASCII by construction.
        std::str::from_utf8(&self.p[start..self.i]).ok()?.parse::<f64>().ok().map(Some)
    }

    /// One digit or more.
    fn digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit)?;
        self.digits();
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::json_ts;

    /// What the serde parse this replaces answered.
    fn serde_ts(p: &[u8]) -> Option<f64> {
        #[derive(serde::Deserialize)]
        struct Ts {
            ts: Option<f64>,
        }
        if p.first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice::<Ts>(p).ok()?.ts
    }

    /// Equal, but for the last bits (serde_json's float parsing is not always exact).
    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    #[test]
    fn answers_as_serde_on_hand_picked_payloads() {
        let cases: &[&str] = &[
            r#"{"ts":1764600000000}"#,
            r#"{"device":"meter-0001","ts":1764600000001,"temp":18.25,"site":"plant-a/line-3","status":"ok"}"#,
            r#"{ "ts" : 1764600000.5 , "x" : [1, {"ts": 2}, "]}\"{"] }"#,
            r#"{"a":{"ts":5},"b":"\"ts\":7"}"#,
            r#"{"ts":null}"#,
            r#"{"ts":"1764600000000"}"#,
            r#"{"ts":1e12}"#,
            r#"{"ts":-0.5E+3}"#,
            r#"{"ts":01}"#,
            r#"{"ts":1.}"#,
            r#"{"ts":.5}"#,
            r#"{"ts":1,"ts":2}"#,
            r#"{"ts":1}x"#,
            r#"{"ts":1}  "#,
            r#"{"ts":1"#,
            r#"{"ts":1,}"#,
            r#"{"ts":12abc}"#,
            r#"{}"#,
            r#"{"#,
            r#"{"ts" 1}"#,
            r#"{ts:1}"#,
            r#"[{"ts":1}]"#,
            r#" {"ts":1}"#,
            r#"{"x":true,"y":false,"z":null,"ts":3}"#,
            "",
        ];
        for case in cases {
            assert_eq!(json_ts(case.as_bytes()), serde_ts(case.as_bytes()), "{case}");
        }
    }

    /// A JSON value, as text, of the kinds a telemetry payload holds.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::to_string(&f).unwrap()),
            "[a-z\"\\\\{}\\[\\]:, ]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("null".to_string()),
            Just("true".to_string()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("(ts|a|b)", inner), 0..4)
                    .prop_map(|v| format!("{{{}}}", v.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))),
            ]
        })
    }

    proptest! {
        #[test]
        fn answers_as_serde_on_generated_objects(fields in prop::collection::vec(("(ts|a|b|t)", value()), 0..5), space in "[ \n]{0,2}", cut in any::<prop::sample::Index>()) {
            let text = format!("{{{}}}", fields.iter().map(|(k, v)| format!("\"{k}\"{space}:{space}{v}")).collect::<Vec<_>>().join(","));
            prop_assert!(same(json_ts(text.as_bytes()), serde_ts(text.as_bytes())), "{}", text);
            // ... and on a prefix of it (a payload cut short).
            let short = &text.as_bytes()[..cut.index(text.len())];
            prop_assert!(same(json_ts(short), serde_ts(short)), "{}", String::from_utf8_lossy(short));
        }
    }
}
