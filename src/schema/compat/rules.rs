//! The rules of `differences`: one function per kind of instance a keyword constrains.

use super::*;

/// Every reason why an instance valid under `narrow` might not be valid under `wide`.
///
/// Empty means every instance valid under `narrow` is valid under `wide` (sound, possibly
/// conservative). Meant for schemas for which [`unsupported`] is empty; if either one is not,
/// each unsupported item is reported as a `schema_false` problem ("cannot decide"),
/// unless `wide` accepts everything.
pub fn differences(narrow: &Value, wide: &Value) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    if is_true(wide) {
        return out;
    }
    let bad: Vec<String> = unsupported(narrow).into_iter().chain(unsupported(wide)).collect();
    if !bad.is_empty() {
        let detail = |b: String| format!("cannot decide, unsupported: {b}");
        bad.into_iter().for_each(|b| push(&mut out, "", Kind::SchemaFalse, detail(b)));
        return out;
    }
    diff(narrow, wide, "", &mut out);
    out
}

pub(super) fn diff(n: &Value, w: &Value, path: &str, out: &mut Vec<Incompatibility>) {
    if is_false(n) || is_true(w) {
        return;
    }
    if is_false(w) {
        return push(out, path, Kind::SchemaFalse, "accepts nothing".into());
    }
    let (tn, tw) = (type_mask(n), type_mask(w));
    if let Some(values) = finite_values(n, tn) {
        return values_diff(&values, n, w, path, out);
    }
    if tn & !tw != 0 {
        push(out, path, Kind::TypeNarrowed, format!("{} -> {}", mask_str(tn), mask_str(tw)));
    }
    if let Some(e) = get(w, "enum").or(get(w, "const")) {
        push(out, path, Kind::EnumValueRemoved, format!("any value -> {e}"));
    }
    let t = tn & tw;
    if t & NUM != 0 {
        numbers(n, w, t & NUM == INT, path, out);
    }
    if t & STR != 0 {
        strings(n, w, path, out);
    }
    if t & ARR != 0 {
        arrays(n, w, path, out);
    }
    if t & OBJ != 0 {
        objects(n, w, path, out);
    }
}

/// Compares subschemas where an open narrow side (`true`) is reported as `open` as a whole.
pub(super) fn sub(n: &Value, w: &Value, path: &str, open: Kind, out: &mut Vec<Incompatibility>) {
    if is_true(n) && !is_true(w) {
        push(out, path, open, format!("anything -> {w}"));
    } else {
        diff(n, w, path, out);
    }
}

/// The values of N when it can only have finitely many (`const`, `enum`, null/boolean types).
pub(super) fn finite_values(n: &Value, tn: u8) -> Option<Vec<Value>> {
    match (get(n, "const"), get(n, "enum")) {
        (Some(c), _) => Some(vec![c.clone()]),
        (None, Some(Value::Array(e))) => Some(e.clone()),
        _ if tn & !(NULL | BOOL) == 0 => Some(vec![Value::Null, Value::Bool(false), Value::Bool(true)]),
        _ => None,
    }
}

pub(super) fn values_diff(values: &[Value], n: &Value, w: &Value, path: &str, out: &mut Vec<Incompatibility>) {
    for v in values.iter().filter(|v| reject(v, n, false).is_none()) {
        if let Some(kind) = reject(v, w, true) {
            push(out, path, kind, format!("value {v} is not accepted"));
        }
    }
}

pub(super) fn numbers(n: &Value, w: &Value, int_only: bool, path: &str, out: &mut Vec<Incompatibility>) {
    let round = |b: Option<Bound>, up: bool| if int_only { b.map(|b| b.to_int(up)) } else { b };
    let lower = round(bound(n, "minimum", "exclusiveMinimum", Ordering::Greater), true);
    let upper = round(bound(n, "maximum", "exclusiveMaximum", Ordering::Less), false);
    for (kw, excl, nb, dir) in [
        ("minimum", false, lower, Ordering::Greater),
        ("exclusiveMinimum", true, lower, Ordering::Greater),
        ("maximum", false, upper, Ordering::Less),
        ("exclusiveMaximum", true, upper, Ordering::Less),
    ] {
        let Some(wv) = get(w, kw).and_then(Value::as_number).map(Num::of) else { continue };
        let ok = nb.is_some_and(|b| match b.val.compare(wv) {
            Some(o) if o == dir => true,
            Some(Ordering::Equal) => b.excl || !excl,
            _ => false,
        });
        if !ok {
            let was = nb.map_or("none".into(), |b| format!("{}{}", if b.excl { "exclusive " } else { "" }, b.val));
            push(out, path, Kind::RangeNarrowed, format!("{kw}: {was} -> {wv}"));
        }
    }
    let Some(k) = get(w, "multipleOf").and_then(Value::as_number).map(Num::of) else { return };
    let nm = get(n, "multipleOf").and_then(Value::as_number).map(Num::of);
    let divides = |j: Num| {
        j.compare(k) == Some(Ordering::Equal) || matches!((j, k), (Num::I(j), Num::I(k)) if k != 0 && safe(k) && safe(j) && j % k == 0)
    };
    if !(nm.is_some_and(divides) || (int_only && divides(Num::I(1)))) {
        let was = nm.map_or("none".into(), |j| j.to_string());
        push(out, path, Kind::RangeNarrowed, format!("multipleOf: {was} -> {k}"));
    }
}

pub(super) fn strings(n: &Value, w: &Value, path: &str, out: &mut Vec<Incompatibility>) {
    counts(uint(n, "minLength").unwrap_or(0), uint(n, "maxLength"), w, ["minLength", "maxLength"], path, out);
    if let Some(p) = get(w, "pattern")
        && get(n, "pattern") != Some(p)
    {
        let was = get(n, "pattern").map_or("none".into(), Value::to_string);
        push(out, path, Kind::PatternChanged, format!("{was} -> {p}"));
    }
}

pub(super) fn arrays(n: &Value, w: &Value, path: &str, out: &mut Vec<Incompatibility>) {
    let items = get(n, "items").unwrap_or(&TRUE);
    let max = if is_false(items) { Some(0) } else { uint(n, "maxItems") };
    counts(uint(n, "minItems").unwrap_or(0), max, w, ["minItems", "maxItems"], path, out);
    let unique = |s: &Value| get(s, "uniqueItems") == Some(&Value::Bool(true));
    if unique(w) && !unique(n) && max.is_none_or(|m| m > 1) {
        push(out, path, Kind::UniqueItemsAdded, "false -> true".into());
    }
    if max != Some(0) {
        let w_items = get(w, "items").unwrap_or(&TRUE);
        sub(items, w_items, &child(path, "items"), Kind::ItemsNarrowed, out);
    }
}

pub(super) fn objects(n: &Value, w: &Value, path: &str, out: &mut Vec<Incompatibility>) {
    let (np, wp) = (props(n), props(w));
    let n_ap = get(n, "additionalProperties").unwrap_or(&TRUE);
    let w_ap = get(w, "additionalProperties").unwrap_or(&TRUE);
    let removed = |out: &mut Vec<_>, p: &str, k: &str| push(out, p, Kind::PropertyRemoved, format!("{k} is refused"));
    for (k, ws) in wp.into_iter().flatten() {
        let p = child(&child(path, "properties"), k);
        match np.and_then(|m| m.get(k)) {
            Some(ns) if is_false(ws) && !is_false(ns) => removed(out, &p, k),
            Some(ns) => diff(ns, ws, &p, out),
            None => sub(n_ap, ws, &p, Kind::PropertyAddedToOpenModel, out),
        }
    }
    for (k, ns) in np.into_iter().flatten().filter(|(k, _)| wp.is_none_or(|m| !m.contains_key(*k))) {
        let p = child(&child(path, "properties"), k);
        if !is_false(w_ap) {
            sub(ns, w_ap, &p, Kind::AdditionalPropertiesTightened, out);
        } else if !is_false(ns) {
            removed(out, &p, k);
        }
    }
    let ap_path = child(path, "additionalProperties");
    if is_false(w_ap) && !is_false(n_ap) {
        push(out, &ap_path, Kind::AdditionalPropertiesTightened, format!("{n_ap} -> false"));
    } else {
        sub(n_ap, w_ap, &ap_path, Kind::AdditionalPropertiesTightened, out);
    }
    let n_req = required(n);
    for r in required(w).into_iter().filter(|r| !n_req.contains(r)) {
        push(out, path, Kind::RequiredAdded, format!("{r} is required"));
    }
    let min = uint(n, "minProperties").unwrap_or(0).max(n_req.len() as u64);
    let listed = np.map_or(0, |m| m.values().filter(|s| !is_false(s)).count() as u64);
    let max = match (uint(n, "maxProperties"), is_false(n_ap)) {
        (m, true) => Some(m.map_or(listed, |m| m.min(listed))),
        (m, false) => m,
    };
    counts(min, max, w, ["minProperties", "maxProperties"], path, out);
}

/// Length-like keywords: W's minimum must be <= `min`, W's maximum >= `max`.
pub(super) fn counts(min: u64, max: Option<u64>, w: &Value, kws: [&str; 2], path: &str, out: &mut Vec<Incompatibility>) {
    let show_max = max.map_or("none".into(), |m| m.to_string());
    if let Some(wmin) = uint(w, kws[0]).filter(|&m| m > min) {
        push(out, path, Kind::LengthNarrowed, format!("{}: {min} -> {wmin}", kws[0]));
    }
    if let Some(wmax) = uint(w, kws[1]).filter(|&m| max.is_none_or(|n| n > m)) {
        push(out, path, Kind::LengthNarrowed, format!("{}: {show_max} -> {wmax}", kws[1]));
    }
}
