use super::*;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::json;
use std::cell::Cell;

/// `valid` for the subset, undecidable keywords counting as failures.
fn valid(v: &Value, s: &Value) -> bool {
    reject(v, s, true).is_none()
}

fn kinds(d: &[Incompatibility]) -> Vec<(Kind, &str)> {
    d.iter().map(|i| (i.kind, i.path.as_str())).collect()
}

/// (name, old, new, expected differences(old, new) as (kind, path); empty = backward compatible).
type Case = (&'static str, Value, Value, Vec<(Kind, &'static str)>);

fn cases() -> Vec<Case> {
    use Kind::*;
    let closed_a = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
    let closed_ab =
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "additionalProperties": false});
    let open_a = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let open_ab = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
    let req = |r: Value| json!({"type": "object", "properties": {"a": {}, "b": {"default": 1}}, "required": r});
    let num = |extra: Value| {
        let mut s = json!({"type": "number"});
        s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s
    };
    vec![
        ("number -> integer", json!({"type": "number"}), json!({"type": "integer"}), vec![(TypeNarrowed, "")]),
        ("integer -> number", json!({"type": "integer"}), json!({"type": "number"}), vec![]),
        (
            "nested type",
            json!({"properties": {"temp": {"type": "number"}}}),
            json!({"properties": {"temp": {"type": "integer"}}}),
            vec![(TypeNarrowed, "/properties/temp")],
        ),
        ("type union narrowed", json!({"type": ["string", "null"]}), json!({"type": "string"}), vec![(TypeNarrowed, "")]),
        ("optional added, closed", closed_a.clone(), closed_ab.clone(), vec![]),
        ("property removed, closed", closed_ab.clone(), closed_a.clone(), vec![(PropertyRemoved, "/properties/b")]),
        ("property added, open", open_a.clone(), open_ab.clone(), vec![(PropertyAddedToOpenModel, "/properties/b")]),
        ("property dropped, open", open_ab, open_a.clone(), vec![]),
        ("closing", open_a.clone(), closed_a.clone(), vec![(AdditionalPropertiesTightened, "/additionalProperties")]),
        ("opening", closed_a, open_a, vec![]),
        (
            "ap schema",
            json!({"additionalProperties": true}),
            json!({"additionalProperties": {"type": "string"}}),
            vec![(AdditionalPropertiesTightened, "/additionalProperties")],
        ),
        (
            "ap schema narrowed",
            json!({"additionalProperties": {"type": "number"}}),
            json!({"additionalProperties": {"type": "integer"}}),
            vec![(TypeNarrowed, "/additionalProperties")],
        ),
        (
            "property forbidden",
            json!({"properties": {"a": {"type": "string"}}}),
            json!({"properties": {"a": false}}),
            vec![(PropertyRemoved, "/properties/a")],
        ),
        ("required added (default does not help)", req(json!(["a"])), req(json!(["a", "b"])), vec![(RequiredAdded, "")]),
        ("required removed", req(json!(["a", "b"])), req(json!(["a"])), vec![]),
        ("enum value added", json!({"enum": ["x", "y"]}), json!({"enum": ["x", "y", "z"]}), vec![]),
        ("enum value removed", json!({"enum": ["x", "y"]}), json!({"enum": ["x"]}), vec![(EnumValueRemoved, "")]),
        ("enum added", json!({"type": "string"}), json!({"type": "string", "enum": ["x"]}), vec![(EnumValueRemoved, "")]),
        ("enum 1 vs 1.0", json!({"enum": [1, "a"]}), json!({"enum": [1.0, "a"]}), vec![]),
        ("const -> enum", json!({"const": "x"}), json!({"enum": ["x", "y"]}), vec![]),
        ("enum value vs range", json!({"enum": [1, 7]}), json!({"maximum": 5}), vec![(RangeNarrowed, "")]),
        ("boolean -> enum", json!({"type": "boolean"}), json!({"enum": [true, false]}), vec![]),
        ("minimum raised", num(json!({"minimum": 0})), num(json!({"minimum": 1})), vec![(RangeNarrowed, "")]),
        ("minimum lowered", num(json!({"minimum": 1})), num(json!({"minimum": 0})), vec![]),
        ("minimum added", num(json!({})), num(json!({"minimum": 0})), vec![(RangeNarrowed, "")]),
        ("exclusive -> inclusive", num(json!({"exclusiveMinimum": 0})), num(json!({"minimum": 0})), vec![]),
        ("inclusive -> exclusive", num(json!({"minimum": 0})), num(json!({"exclusiveMinimum": 0})), vec![(RangeNarrowed, "")]),
        (
            "integer bounds rounded",
            json!({"type": "integer", "exclusiveMinimum": 0, "maximum": 9.5}),
            json!({"type": "integer", "minimum": 1, "exclusiveMaximum": 10}),
            vec![],
        ),
        ("maximum lowered", num(json!({"maximum": 5})), num(json!({"maximum": 4})), vec![(RangeNarrowed, "")]),
        ("multipleOf coarser", num(json!({"multipleOf": 4})), num(json!({"multipleOf": 2})), vec![]),
        ("multipleOf finer", num(json!({"multipleOf": 2})), num(json!({"multipleOf": 4})), vec![(RangeNarrowed, "")]),
        ("integer multipleOf 1", json!({"type": "integer"}), json!({"type": "integer", "multipleOf": 1}), vec![]),
        ("numeric keyword on strings", json!({"type": "string"}), json!({"type": "string", "minimum": 3}), vec![]),
        ("maxLength lowered", json!({"maxLength": 10}), json!({"maxLength": 5}), vec![(LengthNarrowed, "")]),
        ("minLength lowered", json!({"minLength": 2}), json!({"minLength": 1}), vec![]),
        ("minItems added", json!({"type": "array"}), json!({"type": "array", "minItems": 1}), vec![(LengthNarrowed, "")]),
        ("maxProperties added", json!({"type": "object"}), json!({"type": "object", "maxProperties": 3}), vec![(LengthNarrowed, "")]),
        ("minProperties from required", req(json!(["a", "b"])), json!({"minProperties": 2}), vec![]),
        ("pattern changed", json!({"pattern": "^a"}), json!({"pattern": "^b"}), vec![(PatternChanged, "")]),
        ("pattern kept", json!({"pattern": "^a", "maxLength": 3}), json!({"pattern": "^a"}), vec![]),
        ("pattern dropped", json!({"pattern": "^a"}), json!({}), vec![]),
        (
            "items constrained",
            json!({"type": "array"}),
            json!({"type": "array", "items": {"type": "string"}}),
            vec![(ItemsNarrowed, "/items")],
        ),
        ("items narrowed", json!({"items": {"type": "number"}}), json!({"items": {"type": "integer"}}), vec![(TypeNarrowed, "/items")]),
        ("items widened", json!({"items": {"type": "integer"}}), json!({"items": {}}), vec![]),
        ("uniqueItems added", json!({"type": "array"}), json!({"type": "array", "uniqueItems": true}), vec![(UniqueItemsAdded, "")]),
        ("uniqueItems, one item", json!({"maxItems": 1}), json!({"uniqueItems": true}), vec![]),
        (
            "closed model bounds properties",
            json!({"properties": {"a": {}, "b": false, "c": {}}, "additionalProperties": false}),
            json!({"maxProperties": 2}),
            vec![],
        ),
        (
            "closed model, fewer allowed",
            json!({"properties": {"a": {}, "b": true, "c": {}}, "additionalProperties": false, "maxProperties": 5}),
            json!({"maxProperties": 2}),
            vec![(LengthNarrowed, "")],
        ),
        (
            "dropped property of a closed model",
            json!({"properties": {"a": {}}, "additionalProperties": false}),
            json!({"additionalProperties": false}),
            vec![(PropertyRemoved, "/properties/a")],
        ),
        (
            "integer with fractional bounds",
            json!({"type": "integer", "minimum": 0.5, "maximum": 2.5}),
            json!({"minimum": 1, "maximum": 2}),
            vec![],
        ),
        (
            "integer with fractional bounds, too tight",
            json!({"type": "integer", "minimum": 0.5}),
            json!({"exclusiveMinimum": 1}),
            vec![(RangeNarrowed, "")],
        ),
        ("becomes false", json!({"type": "string"}), json!(false), vec![(SchemaFalse, "")]),
        ("from false", json!(false), json!({"type": "string"}), vec![]),
        ("annotations only", json!({"type": "string"}), json!({"title": "t", "format": "email"}), vec![]),
        (
            "nested property path escaped",
            json!({"properties": {"a/b": {"properties": {"c": {"maxLength": 3}}}}}),
            json!({"properties": {"a/b": {"properties": {"c": {"maxLength": 2}}}}}),
            vec![(LengthNarrowed, "/properties/a~1b/properties/c")],
        ),
        ("unsupported is not compatible", json!({}), json!({"oneOf": [{}]}), vec![(SchemaFalse, "")]),
    ]
}

#[test]
fn table_of_pairs() {
    for (name, old, new, expected) in cases() {
        let got = differences(&old, &new);
        assert_eq!(kinds(&got), expected, "{name}: {got:?}");
        assert!(unsupported(&old).is_empty() || name.starts_with("unsupported"), "{name}");
    }
}

#[test]
fn forward_is_the_other_way() {
    let (int, num) = (json!({"type": "integer"}), json!({"type": "number"}));
    let history = [(1, &int)];
    assert!(check(Mode::Backward, &history, &num).is_empty());
    let forward = check(Mode::Forward, &history, &num);
    assert_eq!(forward.len(), 1);
    assert_eq!(forward[0].to_string(), "against version 1 (FORWARD): /: type_narrowed: number -> integer");
    let full = check(Mode::Full, &history, &num);
    assert_eq!(full, forward);
    assert!(check(Mode::None, &history, &json!(false)).is_empty());
    assert!(check(Mode::FullTransitive, &[], &num).is_empty());
}

#[test]
fn transitive_modes_check_every_version() {
    let (v1, v2) = (json!({"enum": ["a", "b", "c"]}), json!({"enum": ["a", "b"]}));
    let v3 = json!({"enum": ["a", "b", "d"]});
    let history = [(1, &v1), (2, &v2)];
    assert!(check(Mode::Backward, &history, &v3).is_empty());
    let found = check(Mode::BackwardTransitive, &history, &v3);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].against, found[0].direction), (1, Direction::Backward));
    assert_eq!(found[0].problem.kind, Kind::EnumValueRemoved);
    // v3 adds "d": forward fails against both under FORWARD_TRANSITIVE, once under FULL.
    assert_eq!(check(Mode::ForwardTransitive, &history, &v3).len(), 2);
    let full = check(Mode::Full, &history, &v3);
    assert_eq!(full.iter().map(|f| (f.against, f.direction)).collect::<Vec<_>>(), [(2, Direction::Forward)]);
    assert_eq!(check(Mode::FullTransitive, &history, &v3).len(), 3);
}

#[test]
fn modes_parse_and_print() {
    for m in Mode::ALL {
        assert_eq!(Mode::parse(m.as_str()), Some(m));
        assert_eq!(Mode::parse(&m.as_str().to_lowercase()), Some(m));
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(Mode::parse("Backward"), None);
    assert_eq!(Mode::parse("FULLY"), None);
    let transitive: Vec<_> = Mode::ALL.into_iter().filter(|m| m.transitive()).collect();
    assert_eq!(transitive, [Mode::BackwardTransitive, Mode::ForwardTransitive, Mode::FullTransitive]);
    assert_eq!(Kind::PropertyAddedToOpenModel.to_string(), "property_added_to_open_model");
}

#[test]
fn unsupported_lists_paths() {
    let s = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "oneOf": [{}],
        "properties": {"a": {"$ref": "#/x"}, "b": {"items": {"not": {}}}, "c": 3},
        "additionalProperties": {"patternProperties": {}},
        "type": "text",
        "minLength": -1,
    });
    let mut got = unsupported(&s);
    got.sort();
    let want = [
        "/: minLength (malformed)",
        "/: oneOf",
        "/: type (malformed)",
        "/additionalProperties: patternProperties",
        "/properties/a: $ref",
        "/properties/b/items: not",
        "/properties/c: not a schema",
    ];
    assert_eq!(got, want);
    assert_eq!(unsupported(&json!(7)), ["/: not a schema"]);
    assert_eq!(unsupported(&json!({"$schema": "http://json-schema.org/draft-07/schema#"})), ["/: $schema (malformed)"]);
    assert_eq!(unsupported(&json!({"items": [{}]})), ["/items: not a schema"]);
    assert!(unsupported(&json!({"title": "x", "format": "date", "type": ["null", "integer"]})).is_empty());
}

#[test]
fn no_panic_on_junk() {
    let junk = [
        json!(null),
        json!(3),
        json!("x"),
        json!([{}]),
        json!({"multipleOf": 0}),
        json!({"type": 1, "properties": 2, "items": 3, "enum": 4, "required": [1]}),
        json!({"minimum": "a", "maxLength": 1.5, "additionalProperties": []}),
        json!({"multipleOf": 1e308, "minimum": -1e308, "enum": [1e308, 18446744073709551615u64]}),
    ];
    for a in &junk {
        for b in &junk {
            let _ = differences(a, b);
            let _ = (unsupported(a), reject(a, b, true), reject(a, b, false));
        }
    }
    let diffs = differences(&json!({"multipleOf": 0.5}), &json!({"multipleOf": 1e-300}));
    assert_eq!(kinds(&diffs), [(Kind::RangeNarrowed, "")]);
}

#[test]
fn valid_agrees_with_jsonschema_on_edge_cases() {
    let schemas = [
        json!({"enum": [1, [1], {"a": 1}]}),
        json!({"const": 2.0}),
        json!({"uniqueItems": true}),
        json!({"type": "integer"}),
        json!({"maxLength": 1}),
        json!({"minLength": 2}),
        json!({"multipleOf": 2}),
        json!({"exclusiveMaximum": 1e30, "minimum": -1}),
    ];
    let instances = [
        json!(1.0),
        json!(2),
        json!([1.0]),
        json!({"a": 1.0}),
        json!([1, 1.0]),
        json!([{"a": 1}, {"a": 1.0}]),
        json!(1e30),
        json!(1e300),
        json!(18446744073709551615u64),
        json!("é"),
        json!("éa"),
        json!(-4.0),
        json!(3.5),
    ];
    for s in &schemas {
        let v = jsonschema::draft202012::new(s).unwrap();
        for i in &instances {
            let decidable = reject(i, s, true) == reject(i, s, false);
            assert!(!decidable || valid(i, s) == v.is_valid(i), "{i} on {s}");
            assert!(decidable || s.get("multipleOf").is_some(), "{i} on {s}");
        }
    }
}

// ---------------------------------------------------------------------------
// Property test: differences() is sound against the jsonschema crate.

const KEYS: [&str; 3] = ["a", "b", "c"];
const TYPES_: [&str; 7] = ["null", "boolean", "integer", "number", "string", "array", "object"];

fn scalar() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-2i64..6).prop_map(Value::from),
        select(vec![1.5, 2.0, -0.5]).prop_map(Value::from),
        select(vec!["", "a", "b", "ab", "ba", "abb"]).prop_map(Value::from),
    ]
}

fn instance() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(select(vec!["a", "b", "c", "d"]), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn opt<S: Strategy>(s: S) -> prop::option::OptionStrategy<S> {
    opt_p(0.2, s)
}

fn opt_p<S: Strategy>(p: f64, s: S) -> prop::option::OptionStrategy<S> {
    prop::option::weighted(p, s)
}

fn types() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(TYPES_.to_vec()).prop_map(Value::from),
        select(vec!["integer", "number"]).prop_map(Value::from),
        prop::sample::subsequence(TYPES_.to_vec(), 1..4).prop_map(Value::from),
    ]
}

/// A schema of the subset, nested at most `depth` levels.
fn schema(depth: u32) -> BoxedStrategy<Value> {
    let small = || 0i64..5;
    let numeric = (opt(small()), opt(small()), opt(small()), opt(small()), opt(select(vec![1.0, 2.0, 3.0, 0.5])));
    let kw = (
        opt(types()),
        opt(prop::collection::vec(scalar(), 0..4)),
        prop::option::weighted(0.05, scalar()),
        numeric,
        (opt(0u64..4), opt(0u64..4), opt(0u64..3), opt(0u64..3), opt(any::<bool>())),
        (opt(prop::sample::subsequence(KEYS.to_vec(), 0..3)), opt(0u64..3), opt(0u64..3)),
    );
    let node = kw.prop_map(|(t, e, c, (min, max, xmin, xmax, mult), (minl, maxl, mini, maxi, uniq), (req, minp, maxp))| {
        let mut o = Map::new();
        let mut put = |k: &str, v: Option<Value>| v.into_iter().for_each(|v| drop(o.insert(k.into(), v)));
        put("type", t);
        put("enum", e.map(Value::from));
        put("const", c);
        put("minimum", min.map(Value::from));
        put("maximum", max.map(Value::from));
        put("exclusiveMinimum", xmin.map(Value::from));
        put("exclusiveMaximum", xmax.map(Value::from));
        put("multipleOf", mult.map(|m: f64| if m.fract() == 0.0 { Value::from(m as i64) } else { Value::from(m) }));
        put("minLength", minl.map(Value::from));
        put("maxLength", maxl.map(Value::from));
        put("minItems", mini.map(Value::from));
        put("maxItems", maxi.map(Value::from));
        put("uniqueItems", uniq.map(Value::from));
        put("required", req.map(Value::from));
        put("minProperties", minp.map(Value::from));
        put("maxProperties", maxp.map(Value::from));
        Value::Object(o)
    });
    if depth == 0 {
        return prop_oneof![8 => node, 1 => any::<bool>().prop_map(Value::Bool)].boxed();
    }
    let inner = schema(depth - 1);
    let props = prop::collection::btree_map(select(KEYS.to_vec()), inner.clone(), 0..3);
    let nested = (node, opt(props), opt(inner.clone()), opt(inner)).prop_map(|(mut s, p, ap, items)| {
        if let Some(o) = s.as_object_mut() {
            p.into_iter().for_each(|p| drop(o.insert("properties".into(), json!(p))));
            ap.into_iter().for_each(|ap| drop(o.insert("additionalProperties".into(), ap)));
            items.into_iter().for_each(|i| drop(o.insert("items".into(), i)));
        }
        s
    });
    prop_oneof![8 => nested, 1 => any::<bool>().prop_map(Value::Bool)].boxed()
}

/// Changes a keyword the node has: a bound moves by -2..=2 or switches between inclusive and
/// exclusive, a count moves, `multipleOf` changes, a boolean flips, an array loses an element.
fn tweak(o: &mut Map<String, Value>, arg: u8) {
    let keys: Vec<String> = o.keys().cloned().collect();
    let Some(k) = keys.get(arg as usize % keys.len().max(1)).cloned() else {
        return;
    };
    let pairs = [("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")];
    let partner = pairs.iter().find_map(|&(a, b)| {
        if k == a {
            Some(b)
        } else if k == b {
            Some(a)
        } else {
            None
        }
    });
    let delta = i64::from(arg / 16 % 5) - 2;
    let v = o[&k].clone();
    let new = match (&v, partner) {
        (_, Some(p)) if (arg / 8).is_multiple_of(2) => {
            o.remove(&k);
            return drop(o.insert(p.into(), v));
        }
        (Value::Number(_), _) if k == "multipleOf" => [json!(1), json!(2), json!(3), json!(4), json!(0.5)][arg as usize / 8 % 5].clone(),
        (Value::Number(n), Some(_)) => number(n.as_f64().unwrap_or(0.0) + f64::from(arg / 16 % 9) / 2.0 - 2.0),
        (Value::Number(n), None) => json!((n.as_i64().unwrap_or(0) + delta).max(0)),
        (Value::Bool(b), _) => json!(!b),
        (Value::Array(a), _) if a.len() > usize::from(k == "type") => {
            let mut a = a.clone();
            a.remove(arg as usize / 8 % a.len());
            json!(a)
        }
        _ => return,
    };
    o.insert(k, new);
}

/// A small edit at a node chosen by `route`: `op` picks what, `arg` how.
fn mutate(s: &mut Value, route: &[u8], op: u8, arg: u8) {
    let slots = |s: &Value| -> Vec<String> {
        let mut v: Vec<String> = props(s).into_iter().flatten().map(|(k, _)| format!("properties/{k}")).collect();
        v.extend(["items", "additionalProperties"].iter().filter(|k| get(s, k).is_some()).map(|k| k.to_string()));
        v
    };
    let mut node = s;
    for &r in route {
        let options = slots(node);
        if options.is_empty() || r % 3 == 0 {
            break;
        }
        let pick = &options[r as usize % options.len()];
        let o = node.as_object_mut().unwrap();
        node = match pick.strip_prefix("properties/") {
            Some(k) => o.get_mut("properties").unwrap().get_mut(k).unwrap(),
            None => o.get_mut(pick.as_str()).unwrap(),
        };
    }
    if op % 20 == 15 || !node.is_object() {
        *node = [json!(true), json!(false), json!({}), json!({"type": "string"})][arg as usize % 4].clone();
        return;
    }
    let o = node.as_object_mut().unwrap();
    let bump = |o: &mut Map<String, Value>, k: &str| {
        let v = o.get(k).and_then(Value::as_i64).map_or(i64::from(arg % 4), |v| v + if arg.is_multiple_of(2) { 1 } else { -1 });
        o.insert(k.into(), json!(v.max(0)));
    };
    let key = KEYS[arg as usize % 3];
    match op % 20 {
        0 => {
            let keys: Vec<String> = o.keys().cloned().collect();
            if !keys.is_empty() {
                o.remove(&keys[arg as usize % keys.len()]);
            }
        }
        1 => drop(o.insert("type".into(), json!(TYPES_[arg as usize % 7]))),
        2 => bump(o, ["minimum", "exclusiveMinimum"][arg as usize / 2 % 2]),
        3 => bump(o, ["maximum", "exclusiveMaximum"][arg as usize / 2 % 2]),
        4 => {
            let mut req: Vec<Value> = o.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
            match req.iter().position(|r| r == key) {
                Some(i) => drop(req.remove(i)),
                None => req.push(json!(key)),
            }
            o.insert("required".into(), Value::from(req));
        }
        5 => {
            let p = o.entry("properties").or_insert_with(|| json!({})).as_object_mut().unwrap();
            if p.remove(key).is_none() {
                p.insert(key.into(), [json!({}), json!({"type": "integer"}), json!(false)][arg as usize / 3 % 3].clone());
            }
        }
        6 => {
            drop(o.insert("additionalProperties".into(), [json!(true), json!(false), json!({"type": "string"})][arg as usize % 3].clone()))
        }
        7 => {
            let mut e: Vec<Value> = o.get("enum").and_then(Value::as_array).cloned().unwrap_or_default();
            let v = [json!(1), json!("a"), json!(null), json!(2.0), json!(true)][arg as usize % 5].clone();
            match e.iter().position(|x| *x == v) {
                Some(i) => drop(e.remove(i)),
                None => e.push(v),
            }
            o.insert("enum".into(), Value::from(e));
        }
        8 => bump(o, ["minLength", "maxLength"][arg as usize % 2]),
        9 => bump(o, ["minItems", "maxItems"][arg as usize % 2]),
        10 => bump(o, ["minProperties", "maxProperties"][arg as usize % 2]),
        11 => drop(o.insert("uniqueItems".into(), json!(arg.is_multiple_of(2)))),
        12 => drop(o.insert("items".into(), json!({"type": TYPES_[arg as usize % 7]}))),
        13 => drop(o.insert("multipleOf".into(), [json!(1), json!(2), json!(4), json!(0.5)][arg as usize % 4].clone())),
        14 => drop(o.insert("type".into(), json!([TYPES_[arg as usize % 7], TYPES_[arg as usize / 7 % 7]]))),
        _ => tweak(o, arg),
    }
    if let Some(Value::Array(t)) = o.get_mut("type") {
        t.dedup();
    }
}

/// A number as JSON, integral ones as integers.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 { Value::from(f as i64) } else { Value::from(f) }
}

/// An object schema of the given (keyword, optional value) pairs.
fn node(kws: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(kws.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
}

fn numeric() -> impl Strategy<Value = Value> + Clone {
    let bound = || opt_p(0.35, select(vec![-1.0, 0.0, 0.5, 1.0, 2.0, 3.0]).prop_map(number));
    let mult = opt_p(0.3, select(vec![1.0, 2.0, 3.0, 4.0, 0.5]).prop_map(number));
    let t = select(vec![None, Some("integer"), Some("number")]).prop_map(|t| t.map(Value::from));
    (t, bound(), bound(), bound(), bound(), mult).prop_map(|(t, a, b, c, d, m)| {
        node(vec![("type", t), ("minimum", a), ("maximum", b), ("exclusiveMinimum", c), ("exclusiveMaximum", d), ("multipleOf", m)])
    })
}

fn string() -> impl Strategy<Value = Value> + Clone {
    let len = || opt_p(0.5, (0u64..4).prop_map(Value::from));
    let pattern = opt_p(0.15, select(vec!["^a", "a"]).prop_map(Value::from));
    let t = prop::option::of(Just(json!("string")));
    (t, len(), len(), pattern).prop_map(|(t, a, b, p)| node(vec![("type", t), ("minLength", a), ("maxLength", b), ("pattern", p)]))
}

fn leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![numeric(), string(), any::<bool>().prop_map(Value::Bool)]
}

fn array() -> impl Strategy<Value = Value> {
    let len = || opt_p(0.4, (0u64..3).prop_map(Value::from));
    let t = prop::option::of(Just(json!("array")));
    let unique = opt_p(0.3, any::<bool>().prop_map(Value::Bool));
    (t, len(), len(), unique, opt_p(0.6, leaf()))
        .prop_map(|(t, a, b, u, i)| node(vec![("type", t), ("minItems", a), ("maxItems", b), ("uniqueItems", u), ("items", i)]))
}

fn object() -> impl Strategy<Value = Value> {
    let count = || opt_p(0.3, (0u64..3).prop_map(Value::from));
    let t = prop::option::of(Just(json!("object")));
    let properties = prop::collection::btree_map(select(KEYS.to_vec()), leaf(), 0..3).prop_map(|p| json!(p));
    let required = prop::sample::subsequence(KEYS.to_vec(), 0..3).prop_map(Value::from);
    let ap = prop_oneof![any::<bool>().prop_map(Value::Bool), leaf()];
    let w = (opt_p(0.7, properties), opt_p(0.5, required), opt_p(0.5, ap));
    (t, w.0, w.1, w.2, count(), count()).prop_map(|(t, p, r, ap, a, b)| {
        node(vec![
            ("type", t),
            ("properties", p),
            ("required", r),
            ("additionalProperties", ap),
            ("minProperties", a),
            ("maxProperties", b),
        ])
    })
}

fn enumerated() -> impl Strategy<Value = Value> {
    let values =
        prop_oneof![prop::collection::vec(scalar(), 0..4).prop_map(|e| ("enum", Value::from(e))), scalar().prop_map(|c| ("const", c)),];
    (prop_oneof![numeric(), string()], values).prop_map(|(mut s, (k, v))| {
        s.as_object_mut().into_iter().for_each(|o| drop(o.insert(k.into(), v.clone())));
        s
    })
}

/// Schemas that exercise one family of keywords densely.
fn focused() -> BoxedStrategy<Value> {
    prop_oneof![numeric(), string(), array(), object(), enumerated()].boxed()
}

/// (old, new) pairs: `new` is `old` after a few edits, or independent.
fn pairs() -> impl Strategy<Value = (Value, Value)> {
    let edits = |ops: BoxedStrategy<u8>| prop::collection::vec((prop::collection::vec(any::<u8>(), 0..3), ops, any::<u8>()), 1..4);
    let edited = |schemas: BoxedStrategy<Value>, ops| {
        (schemas, edits(ops)).prop_map(|(old, edits)| {
            let mut new = old.clone();
            edits.iter().for_each(|(route, op, arg)| mutate(&mut new, route, *op, *arg));
            (old, new)
        })
    };
    let targeted = select(vec![0u8, 2, 3, 4, 5, 6, 6, 8, 9, 10, 10, 11, 16, 16, 16, 16]).boxed();
    prop_oneof![
        4 => edited(schema(2), any::<u8>().boxed()),
        1 => (schema(2), schema(2)),
        4 => edited(focused(), targeted),
        1 => (focused(), focused()),
    ]
}

/// Instances every case checks: numbers around the generated bounds, strings and arrays
/// around the generated lengths.
fn fixed_instances() -> Vec<Value> {
    let mut out: Vec<Value> = (-4..=12).map(|h| number(f64::from(h) / 2.0)).collect();
    out.extend(["", "a", "b", "ab", "ba", "abc", "abcd"].map(Value::from));
    out.extend([json!([]), json!([1]), json!([1, 1]), json!([1, 2]), json!(["a", "b"]), json!([0.5]), json!([1, 2, 3])]);
    out.extend([json!({}), json!({"a": 1}), json!({"a": "ab", "b": 2}), json!({"a": 0, "b": "", "c": 3}), json!({"d": 1})]);
    out
}

/// A tiny deterministic generator for [`sample`].
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }
}

/// An instance that is likely (not surely) valid under `s`: it honours the types, the enum,
/// the bounds, the lengths and the required / listed properties, more or less.
fn sample(s: &Value, rng: &mut Rng, depth: u32) -> Value {
    if let Some(c) = get(s, "const") {
        return c.clone();
    }
    if let Some(Value::Array(e)) = get(s, "enum").filter(|_| rng.below(4) != 0) {
        return e.get(rng.below(e.len() as u64) as usize).cloned().unwrap_or(Value::Null);
    }
    let bits: Vec<u8> = [NULL, BOOL, INT, FRAC, STR, ARR, OBJ].into_iter().filter(|b| type_mask(s) & b != 0).collect();
    let length = |rng: &mut Rng, min: &str, max: &str| {
        let lo = uint(s, min).unwrap_or(0);
        lo + rng.below(uint(s, max).map_or(3, |hi| hi.saturating_sub(lo) + 1))
    };
    match bits.get(rng.below(bits.len() as u64) as usize).copied().unwrap_or(NULL) {
        NULL => Value::Null,
        BOOL => Value::Bool(rng.below(2) == 0),
        INT => number((rng.below(9) as f64) - 2.0),
        FRAC => number((rng.below(17) as f64) / 2.0 - 2.0),
        STR => Value::from((0..length(rng, "minLength", "maxLength")).map(|_| *rng.pick(&['a', 'b'])).collect::<String>()),
        ARR if depth > 0 => {
            let items = get(s, "items").unwrap_or(&TRUE);
            Value::from((0..length(rng, "minItems", "maxItems")).map(|_| sample(items, rng, depth - 1)).collect::<Vec<_>>())
        }
        OBJ if depth > 0 => {
            let mut keys: Vec<&str> = required(s);
            keys.extend(KEYS.iter().chain(&["d"]).filter(|_| rng.below(2) == 0));
            let ap = get(s, "additionalProperties").unwrap_or(&TRUE);
            let schema_of = |k: &str| props(s).and_then(|p| p.get(k)).unwrap_or(ap);
            keys.into_iter().map(|k| (k.to_string(), sample(schema_of(k), rng, depth - 1))).collect::<Map<_, _>>().into()
        }
        _ => json!([]),
    }
}

/// Every `enum`/`const` value in `s`, to use as instances too.
fn literals(s: &Value, out: &mut Vec<Value>) {
    match s {
        Value::Object(o) => o.iter().for_each(|(k, v)| match k.as_str() {
            "enum" => out.extend(v.as_array().into_iter().flatten().cloned()),
            "const" => out.push(v.clone()),
            _ => literals(v, out),
        }),
        Value::Array(a) => a.iter().for_each(|v| literals(v, out)),
        _ => {}
    }
}

#[test]
fn differences_are_sound() {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 6000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5eed);
    }
    let (pairs_seen, compatible, witnessed) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let (distinct, exercised) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (pairs(), prop::collection::vec(instance(), 48), any::<u64>());
    let result = TestRunner::new(config).run(&strategy, |((a, b), mut instances, seed)| {
        instances.extend(fixed_instances());
        let mut rng = Rng(seed | 1);
        for _ in 0..16 {
            instances.extend([sample(&a, &mut rng, 3), sample(&b, &mut rng, 3)]);
        }
        literals(&a, &mut instances);
        literals(&b, &mut instances);
        let va = jsonschema::draft202012::new(&a).map_err(|e| TestCaseError::fail(format!("{a}: {e}")))?;
        let vb = jsonschema::draft202012::new(&b).map_err(|e| TestCaseError::fail(format!("{b}: {e}")))?;
        for (s, v) in [(&a, &va), (&b, &vb)] {
            for i in instances.iter().filter(|i| reject(i, s, true) == reject(i, s, false)) {
                prop_assert_eq!(valid(i, s), v.is_valid(i), "valid() disagrees: {} on {}", i, s);
            }
        }
        for (n, w, vn, vw) in [(&a, &b, &va, &vb), (&b, &a, &vb, &va)] {
            pairs_seen.set(pairs_seen.get() + 1);
            let diffs = differences(n, w);
            let accepted: Vec<&Value> = instances.iter().filter(|i| vn.is_valid(i)).collect();
            if diffs.is_empty() {
                compatible.set(compatible.get() + 1);
                if !json_eq(n, w) {
                    distinct.set(distinct.get() + 1);
                    if !accepted.is_empty() {
                        exercised.set(exercised.get() + 1);
                    }
                }
                for i in &accepted {
                    prop_assert!(vw.is_valid(i), "unsound: {} valid under {} but not {}", i, n, w);
                }
            } else if accepted.iter().any(|i| !vw.is_valid(i)) {
                witnessed.set(witnessed.get() + 1);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (seen, ok, bad) = (pairs_seen.get(), compatible.get(), witnessed.get());
    let (distinct, exercised) = (distinct.get(), exercised.get());
    println!(
        "ordered pairs: {seen}, judged compatible: {ok} ({distinct} of them not equal, {exercised} of those with an instance valid under the narrow side), incompatible with a witness instance: {bad}"
    );
    assert!(exercised * 20 >= seen, "only {exercised} of {seen} pairs were compatible, distinct and exercised");
    assert!(ok * 10 >= seen, "only {ok} of {seen} pairs judged compatible");
}
