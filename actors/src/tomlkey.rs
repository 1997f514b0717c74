//! Naming the dotted key at a byte offset of a TOML text, so that serde errors (wrong type,
//! unknown variant, unknown field) are reported like validation errors: `root.strategy: ...`.

/// The dotted key (`root.children[1].restart`) of the line holding byte `offset`, if any.
pub fn dotted_key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = name.trim().to_string();
        }
        let end = pos + line.len();
        if offset < end || end == text.len() {
            let key = trimmed.split('=').next().filter(|_| trimmed.contains('=')).map(str::trim)?;
            return Some(if table.is_empty() { key.to_string() } else { format!("{table}.{key}") });
        }
        pos = end;
    }
    None
}

/// A TOML parse error as one line, led by the dotted key where one can be found.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span().and_then(|s| dotted_key_at(text, s.start)) {
        Some(key) => format!("{key}: {message}"),
        None => match e.span() {
            Some(s) => format!("{message} (at byte {})", s.start),
            None => message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_with_their_table_and_array_index() {
        let text = "top = 1\n[a]\nx = 1\n[[b.c]]\ny = 2\n[[b.c]]\ny = 3\n";
        assert_eq!(dotted_key_at(text, 2).as_deref(), Some("top"));
        assert_eq!(dotted_key_at(text, text.find("x =").unwrap()).as_deref(), Some("a.x"));
        assert_eq!(dotted_key_at(text, text.find("y = 2").unwrap()).as_deref(), Some("b.c[0].y"));
        assert_eq!(dotted_key_at(text, text.find("y = 3").unwrap() + 4).as_deref(), Some("b.c[1].y"));
    }
}
