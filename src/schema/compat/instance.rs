//! Evaluating one instance against the subset exactly (for enum and const values), numbers
//! compared as JSON does, and the small helpers the rules share.

use super::*;

/// Why `s` rejects `v` (`None`: accepted). What cannot be decided (`pattern`, some
/// `multipleOf`) counts as a rejection when `strict`, as accepted otherwise.
pub(super) fn reject(v: &Value, s: &Value, strict: bool) -> Option<Kind> {
    let o = match s {
        Value::Bool(b) => return (!b).then_some(Kind::SchemaFalse),
        Value::Object(o) => o,
        _ => return strict.then_some(Kind::SchemaFalse),
    };
    if type_mask(s) & value_bit(v) == 0 {
        return Some(Kind::TypeNarrowed);
    }
    let in_enum = |e: &Value| e.as_array().is_none_or(|e| e.iter().any(|x| json_eq(x, v)));
    if o.get("const").is_some_and(|c| !json_eq(c, v)) || o.get("enum").is_some_and(|e| !in_enum(e)) {
        return Some(Kind::EnumValueRemoved);
    }
    match v {
        Value::Number(x) => reject_number(Num::of(x), s, strict),
        Value::String(t) => {
            let len = t.chars().count() as u64;
            let pattern = o.contains_key("pattern") && strict;
            reject_count(len, s, ["minLength", "maxLength"]).or(pattern.then_some(Kind::PatternChanged))
        }
        Value::Array(a) => reject_count(a.len() as u64, s, ["minItems", "maxItems"])
            .or_else(|| {
                let dup = |i: usize| a[i + 1..].iter().any(|y| json_eq(&a[i], y));
                let unique = o.get("uniqueItems") == Some(&Value::Bool(true));
                (unique && (0..a.len()).any(dup)).then_some(Kind::UniqueItemsAdded)
            })
            .or_else(|| a.iter().find_map(|x| reject(x, o.get("items").unwrap_or(&TRUE), strict))),
        Value::Object(m) => reject_object(m, s, strict),
        _ => None,
    }
}

pub(super) fn reject_number(x: Num, s: &Value, strict: bool) -> Option<Kind> {
    let fails = |kw, bad: &[Ordering]| {
        let limit = get(s, kw).and_then(Value::as_number).map(Num::of);
        limit.is_some_and(|l| x.compare(l).is_none_or(|o| bad.contains(&o)))
    };
    let (lt, eq, gt) = (Ordering::Less, Ordering::Equal, Ordering::Greater);
    let out_of_range = fails("minimum", &[lt]) || fails("exclusiveMinimum", &[lt, eq]);
    if out_of_range || fails("maximum", &[gt]) || fails("exclusiveMaximum", &[gt, eq]) {
        return Some(Kind::RangeNarrowed);
    }
    let k = get(s, "multipleOf").and_then(Value::as_number).map(Num::of)?;
    let multiple = match (x, k) {
        (Num::I(a), Num::I(k)) if safe(a) && safe(k) && k != 0 => Some(a % k == 0),
        (Num::F(f), Num::I(_)) if f.is_finite() && f.abs() < 1e15 => Some(false),
        _ => None,
    };
    (!multiple.unwrap_or(!strict)).then_some(Kind::RangeNarrowed)
}

pub(super) fn reject_count(len: u64, s: &Value, kws: [&str; 2]) -> Option<Kind> {
    let short = uint(s, kws[0]).is_some_and(|m| len < m);
    (short || uint(s, kws[1]).is_some_and(|m| len > m)).then_some(Kind::LengthNarrowed)
}

pub(super) fn reject_object(m: &Map<String, Value>, s: &Value, strict: bool) -> Option<Kind> {
    if required(s).iter().any(|r| !m.contains_key(*r)) {
        return Some(Kind::RequiredAdded);
    }
    if let Some(kind) = reject_count(m.len() as u64, s, ["minProperties", "maxProperties"]) {
        return Some(kind);
    }
    let ap = get(s, "additionalProperties").unwrap_or(&TRUE);
    m.iter().find_map(|(k, x)| match props(s).and_then(|p| p.get(k)) {
        Some(ps) => reject(x, ps, strict),
        None => reject(x, ap, strict).map(|kind| match kind {
            Kind::SchemaFalse => Kind::AdditionalPropertiesTightened,
            other => other,
        }),
    })
}

/// JSON equality as JSON Schema defines it: numbers compare numerically.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).compare(Num::of(y)) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}

/// An exact number: integers (also integral floats) as `I`, other floats as `F`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    I(i128),
    F(f64),
}

impl Num {
    pub(super) fn of(n: &Number) -> Num {
        match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Num::I(i.into()),
            (_, Some(u), _) => Num::I(u.into()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e30 => Num::I(f as i128),
            (_, _, f) => Num::F(f.unwrap_or(f64::NAN)),
        }
    }

    pub(super) fn f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }

    /// Exact comparison (a rounded large integer never crosses a non-integral float).
    pub(super) fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            _ => self.f64().partial_cmp(&other.f64()),
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::I(i) => write!(f, "{i}"),
            Num::F(x) => write!(f, "{x}"),
        }
    }
}

/// Integers the validator still handles exactly (|k| <= 2^53).
pub(super) fn safe(k: i128) -> bool {
    k.abs() <= 1 << 53
}

/// A numeric bound: its value and whether it is exclusive.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bound {
    pub(super) val: Num,
    pub(super) excl: bool,
}

impl Bound {
    /// The same bound on integers, as an inclusive integer bound (rounding `up` for lower bounds).
    pub(super) fn to_int(self, up: bool) -> Bound {
        let val = match self.val {
            Num::I(i) if self.excl => Num::I(if up { i + 1 } else { i - 1 }),
            Num::F(f) if f.is_finite() && f.abs() < 1e15 => Num::I((if up { f.ceil() } else { f.floor() }) as i128),
            _ => return self,
        };
        Bound { val, excl: false }
    }
}

/// The tightest bound of `s` from an inclusive and an exclusive keyword; `tighter` is the
/// ordering of a tighter value (Greater for lower bounds).
pub(super) fn bound(s: &Value, incl: &str, excl: &str, tighter: Ordering) -> Option<Bound> {
    let at = |kw, excl| get(s, kw).and_then(Value::as_number).map(|n| Bound { val: Num::of(n), excl });
    match (at(incl, false), at(excl, true)) {
        (Some(i), Some(e)) => Some(if e.val.compare(i.val).is_some_and(|o| o == tighter || o == Ordering::Equal) { e } else { i }),
        (i, e) => i.or(e),
    }
}

pub(super) const NULL: u8 = 1;
pub(super) const BOOL: u8 = 2;
pub(super) const INT: u8 = 4;
pub(super) const FRAC: u8 = 8;
pub(super) const NUM: u8 = INT | FRAC;
pub(super) const STR: u8 = 16;
pub(super) const ARR: u8 = 32;
pub(super) const OBJ: u8 = 64;
pub(super) const ANY: u8 = 127;
pub(super) const TYPES: [(&str, u8); 7] =
    [("null", NULL), ("boolean", BOOL), ("number", NUM), ("integer", INT), ("string", STR), ("array", ARR), ("object", OBJ)];
pub(super) static TRUE: Value = Value::Bool(true);

pub(super) fn type_bits(name: &str) -> u8 {
    TYPES.iter().find(|(n, _)| *n == name).map_or(0, |(_, b)| *b)
}

/// The types `s` accepts, as bits (absent or malformed `type` = every type).
pub(super) fn type_mask(s: &Value) -> u8 {
    match get(s, "type") {
        Some(Value::String(t)) => type_bits(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).fold(0, |m, t| m | type_bits(t)),
        _ => ANY,
    }
}

pub(super) fn mask_str(mask: u8) -> String {
    if mask == ANY {
        return "any".into();
    }
    let names = TYPES.iter().filter(|(n, b)| mask & b == *b && !(*n == "integer" && mask & NUM == NUM));
    names.map(|(n, _)| *n).collect::<Vec<_>>().join("|")
}

pub(super) fn value_bit(v: &Value) -> u8 {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Number(n) => match Num::of(n) {
            Num::F(f) if f.fract() != 0.0 => FRAC,
            _ => INT,
        },
        Value::String(_) => STR,
        Value::Array(_) => ARR,
        Value::Object(_) => OBJ,
    }
}

pub(super) fn get<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.as_object().and_then(|o| o.get(key))
}

pub(super) fn uint(s: &Value, key: &str) -> Option<u64> {
    get(s, key).and_then(Value::as_u64)
}

pub(super) fn props(s: &Value) -> Option<&Map<String, Value>> {
    get(s, "properties").and_then(Value::as_object)
}

pub(super) fn required(s: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = get(s, "required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `true`, or an object with annotations only.
pub(super) fn is_true(s: &Value) -> bool {
    match s {
        Value::Bool(b) => *b,
        Value::Object(o) => o.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    }
}

pub(super) fn is_false(s: &Value) -> bool {
    *s == Value::Bool(false)
}

pub(super) fn push(out: &mut Vec<Incompatibility>, path: &str, kind: Kind, detail: String) {
    out.push(Incompatibility { path: path.into(), kind, detail });
}

/// `path` extended by one JSON-pointer segment.
pub(super) fn child(path: &str, segment: &str) -> String {
    format!("{path}/{}", segment.replace('~', "~0").replace('/', "~1"))
}

pub(super) fn show(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}
