//! Compatibility of JSON Schema (draft 2020-12) versions, with the meanings of
//! Confluent Schema Registry's compatibility modes.
//!
//! [`differences`]`(narrow, wide)` lists every reason why an instance valid under
//! `narrow` might be invalid under `wide`. It is **sound**: an empty list proves
//! that every instance valid under `narrow` is valid under `wide`. It may be
//! conservative (report a difference that cannot actually be hit). BACKWARD
//! means "every instance valid under the old schema is valid under the new one",
//! i.e. `differences(old, new)`; FORWARD is `differences(new, old)`.
//!
//! Only a subset of the language is decided; [`unsupported`] lists whatever lies
//! outside it (unknown keywords, malformed keyword values, non-schema values).
//! Each keyword only constrains instances of its own type (`minLength` only
//! strings, ...), so a keyword of the wide side matters only for types that both
//! sides accept (the rest is already reported as `type_narrowed`).
//!
//! | keyword (N = narrow, W = wide) | rule for "N ⊆ W" |
//! |---|---|
//! | `true` / `false` | W `false` and N not `false`: `schema_false`; N `false` or W `true`/`{}`: nothing to check |
//! | `type` | types(N) ⊆ types(W); absent = every type; `integer` ⊆ `number` |
//! | `enum`, `const` | if N has `enum`/`const` (or only `null`/`boolean` types), each of its values is evaluated against W exactly; else W having `enum`/`const` is `enum_value_removed`. JSON equality, numbers compared numerically (`1` = `1.0`) |
//! | `properties` | a key listed by both: compare the two subschemas; listed only by W: N's `additionalProperties` governs it (`false`: fine, absent/`true`: `property_added_to_open_model` unless W's is `{}`, schema: compare); listed only by N: W's `additionalProperties` governs it (`false`: `property_removed`) |
//! | `additionalProperties` | absent = `true`; for keys neither lists, compare N's with W's; W refusing what N allows: `additional_properties_tightened` |
//! | `required` | W.required ⊆ N.required, else `required_added`. `default` does not help: validators do not fill in defaults |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` | N's tightest bound must be at least as tight as each of W's (for integer-only N, bounds are rounded to integers) |
//! | `multipleOf` | W's value must equal N's or (both integers) divide it; `1` is implied for integer-only N |
//! | `minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties` | W.min ≤ N.min (absent = 0, or the number of `required` names); W.max ≥ N.max (N must have one) |
//! | `pattern` | regex inclusion is not decided: W's must be absent or equal to N's |
//! | `items` (one schema) | compare N's with W's (absent = `true`), unless N allows only empty arrays |
//! | `uniqueItems` | W `true` needs N `true` (or N's arrays have at most one item) |
//! | `$schema` | must be the draft 2020-12 meta-schema when present |
//! | `$id`, `$comment`, `title`, `description`, `default`, `examples`, `deprecated`, `readOnly`, `writeOnly`, `format` | annotations, no effect on validation (2020-12 treats `format` as an annotation by default) |
//!
//! Everything else (`$ref`, `$defs`, `allOf`, `anyOf`, `oneOf`, `not`, `if`,
//! `patternProperties`, `prefixItems`, `contains`, `unevaluated*`, unknown
//! keywords, ...) is unsupported.

use serde_json::{Map, Number, Value};

mod instance;
mod rules;
#[cfg(test)]
mod tests;

use instance::*;
pub use rules::differences;

use std::cmp::Ordering;
use std::fmt;

/// Confluent's compatibility modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No check.
    None,
    /// The new schema reads data written with the last one.
    Backward,
    /// The new schema reads data written with every earlier one.
    BackwardTransitive,
    /// Data written with the new schema is read by the last one.
    Forward,
    /// Data written with the new schema is read by every earlier one.
    ForwardTransitive,
    /// Backward and forward against the last schema.
    Full,
    /// Backward and forward against every earlier schema.
    FullTransitive,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 7] =
        [Mode::None, Mode::Backward, Mode::BackwardTransitive, Mode::Forward, Mode::ForwardTransitive, Mode::Full, Mode::FullTransitive];

    /// Parses a Confluent name such as `BACKWARD_TRANSITIVE` (or its lower-case form).
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| s == m.as_str() || s == m.as_str().to_ascii_lowercase())
    }

    /// The Confluent name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "NONE",
            Mode::Backward => "BACKWARD",
            Mode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Mode::Forward => "FORWARD",
            Mode::ForwardTransitive => "FORWARD_TRANSITIVE",
            Mode::Full => "FULL",
            Mode::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the mode checks against every earlier version, not just the last.
    pub fn transitive(self) -> bool {
        matches!(self, Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive)
    }

    fn backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::BackwardTransitive | Mode::Full | Mode::FullTransitive)
    }

    fn forward(self) -> bool {
        matches!(self, Mode::Forward | Mode::ForwardTransitive | Mode::Full | Mode::FullTransitive)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Every instance valid under the old schema is valid under the new one.
    Backward,
    /// Every instance valid under the new schema is valid under the old one.
    Forward,
}

/// One reason why instances of one schema may not validate against another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// JSON pointer into the schema where the difference is ("" = root).
    pub path: String,
    /// What kind of difference.
    pub kind: Kind,
    /// Human-readable detail, "narrow side -> wide side" where that applies.
    pub detail: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", show(&self.path), self.kind, self.detail)
    }
}

/// The kind of an [`Incompatibility`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The wider schema does not accept a type the narrower one accepts.
    TypeNarrowed,
    /// A property the narrow side allows is refused by the wide side.
    PropertyRemoved,
    /// The wide side constrains a property the narrow side left open.
    PropertyAddedToOpenModel,
    /// The wide side requires a property the narrow side does not require.
    RequiredAdded,
    /// A value allowed by the narrow side is refused by the wide side's `enum`/`const`
    /// (or another keyword, for a value of the narrow side's `enum`).
    EnumValueRemoved,
    /// `additionalProperties`: the wide side refuses what the narrow side allows.
    AdditionalPropertiesTightened,
    /// `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`/`multipleOf`.
    RangeNarrowed,
    /// `minLength`/`maxLength`, `minItems`/`maxItems`, `minProperties`/`maxProperties`.
    LengthNarrowed,
    /// `pattern` differs (regex inclusion is not decided).
    PatternChanged,
    /// `items` constrained where the narrow side allowed any item.
    ItemsNarrowed,
    /// `uniqueItems` added.
    UniqueItemsAdded,
    /// The wide side is `false` (or cannot be decided) while the narrow side accepts something.
    SchemaFalse,
}

impl Kind {
    /// The snake_case name, e.g. `type_narrowed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TypeNarrowed => "type_narrowed",
            Kind::PropertyRemoved => "property_removed",
            Kind::PropertyAddedToOpenModel => "property_added_to_open_model",
            Kind::RequiredAdded => "required_added",
            Kind::EnumValueRemoved => "enum_value_removed",
            Kind::AdditionalPropertiesTightened => "additional_properties_tightened",
            Kind::RangeNarrowed => "range_narrowed",
            Kind::LengthNarrowed => "length_narrowed",
            Kind::PatternChanged => "pattern_changed",
            Kind::ItemsNarrowed => "items_narrowed",
            Kind::UniqueItemsAdded => "unique_items_added",
            Kind::SchemaFalse => "schema_false",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of a subject check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The earlier version checked against.
    pub against: u32,
    /// Which way the failing check ran.
    pub direction: Direction,
    /// Why it failed.
    pub problem: Incompatibility,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Backward => "BACKWARD",
            Direction::Forward => "FORWARD",
        };
        write!(f, "against version {} ({dir}): {}", self.against, self.problem)
    }
}

/// Checks `new` against the earlier versions `history` (oldest first) under `mode`.
///
/// Non-transitive modes check against the last version only, transitive ones against
/// every version; backward runs `differences(old, new)`, forward `differences(new, old)`.
pub fn check(mode: Mode, history: &[(u32, &Value)], new: &Value) -> Vec<Finding> {
    let against = match (mode, history.len()) {
        (Mode::None, _) | (_, 0) => return Vec::new(),
        (m, n) if !m.transitive() => &history[n - 1..],
        _ => history,
    };
    let mut out = Vec::new();
    for &(version, old) in against {
        let mut add = |direction, problems: Vec<Incompatibility>| {
            out.extend(problems.into_iter().map(|problem| Finding { against: version, direction, problem }));
        };
        if mode.backward() {
            add(Direction::Backward, differences(old, new));
        }
        if mode.forward() {
            add(Direction::Forward, differences(new, old));
        }
    }
    out
}

const ANNOTATIONS: [&str; 11] =
    ["$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "format"];
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords outside the supported subset, each as "path: keyword" (root path shown as "/").
///
/// Malformed values of supported keywords are listed as "path: keyword (malformed)",
/// values that are neither objects nor booleans as "path: not a schema".
pub fn unsupported(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    scan(schema, "", &mut out);
    out
}

fn scan(schema: &Value, path: &str, out: &mut Vec<String>) {
    let obj = match schema {
        Value::Bool(_) => return,
        Value::Object(obj) => obj,
        _ => return out.push(format!("{}: not a schema", show(path))),
    };
    for (key, v) in obj {
        let well_formed = match key.as_str() {
            "$schema" => v.as_str().is_some_and(|s| s.trim_end_matches('#') == DRAFT_2020_12),
            k if ANNOTATIONS.contains(&k) => true,
            "type" => match v {
                Value::String(t) => type_bits(t) != 0,
                Value::Array(ts) => !ts.is_empty() && ts.iter().all(|t| t.as_str().is_some_and(|t| type_bits(t) != 0)),
                _ => false,
            },
            "properties" => v
                .as_object()
                .map(|props| {
                    let base = child(path, "properties");
                    props.iter().for_each(|(p, s)| scan(s, &child(&base, p), out));
                })
                .is_some(),
            "additionalProperties" | "items" => {
                scan(v, &child(path, key), out);
                true
            }
            "required" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "enum" => v.is_array(),
            "const" => true,
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => v.is_number(),
            "multipleOf" => v.as_f64().is_some_and(|m| m > 0.0),
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties" | "maxProperties" => v.is_u64(),
            "pattern" => v.is_string(),
            "uniqueItems" => v.is_boolean(),
            _ => {
                out.push(format!("{}: {key}", show(path)));
                continue;
            }
        };
        if !well_formed {
            out.push(format!("{}: {key} (malformed)", show(path)));
        }
    }
}
