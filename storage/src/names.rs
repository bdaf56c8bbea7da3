//! Collection names and the keys they are stored under.
//!
//! A collection may have any name PostgreSQL accepts: `items`, `"Items"`, `"my docs"`,
//! `"ünïcode"`, even `"../x"`. Below the SQL gateway a collection is known by its *key*, which
//! becomes directory names and Raft group ids (`<key>.<version>.<shard>`), so it holds only
//! `A-Z a-z 0-9 _` and `%XX` escapes of every other byte: no `/`, no `.`, never empty. A name
//! of those characters is its own key, so lowercase names (and every directory written before
//! names were widened) read the same.

/// The longest name PostgreSQL keeps (NAMEDATALEN - 1): longer identifiers are cut to it.
pub const MAX_NAME_BYTES: usize = 63;

fn kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// What joins a schema's name to a collection's in the name of a collection outside
/// `public` ([`qualified`]): NUL, which no SQL identifier holds, so no name is ambiguous.
pub const SCHEMA_SEPARATOR: char = '\0';

/// The collection name of `table` in `schema`: the table's own name in `public`, else
/// `schema`, [`SCHEMA_SEPARATOR`], `table`.
pub fn qualified(schema: &str, table: &str) -> String {
    if schema == "public" {
        table.to_string()
    } else {
        format!("{schema}{SCHEMA_SEPARATOR}{table}")
    }
}

/// The schema (`None`: `public`) and table of a collection name.
pub fn split_qualified(name: &str) -> (Option<&str>, &str) {
    match name.split_once(SCHEMA_SEPARATOR) {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// [`SCHEMA_SEPARATOR`] in a key: between a schema's key and a table's.
pub const SCHEMA_KEY_SEPARATOR: &str = "%00";

/// The key of the collection named `name`; `None` for a name PostgreSQL would not keep
/// (empty, longer than [`MAX_NAME_BYTES`], or holding NUL), each part of a qualified name
/// judged alone.
pub fn storage_key(name: &str) -> Option<String> {
    if let Some((schema, table)) = name.split_once(SCHEMA_SEPARATOR) {
        let (schema, table) = (part_key(schema)?, part_key(table)?);
        return Some(format!("{schema}{SCHEMA_KEY_SEPARATOR}{table}"));
    }
    part_key(name)
}

/// The key of one name (a schema's, or a table's within it).
fn part_key(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains(SCHEMA_SEPARATOR) {
        return None;
    }
    let mut key = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if kept(byte) {
            key.push(byte as char);
        } else {
            key.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(key)
}

/// The name a key stands for; `None` for anything [`storage_key`] does not make.
pub fn sql_name(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key.get(i + 1..i + 3)?;
            if hex.bytes().any(|b| b.is_ascii_lowercase()) {
                return None; // one spelling per key: escapes are upper case
            }
            name.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            name.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(name).ok()?;
    (storage_key(&name)? == key).then_some(name)
}

/// Whether `key` is a collection key (the form [`storage_key`] makes). Every path built from
/// a key checks it first.
pub fn valid_collection_name(key: &str) -> bool {
    sql_name(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legal_name_has_one_safe_key() {
        for name in [
            "items",
            "Items",
            "my docs",
            "ünïcode",
            "../x",
            "a.b",
            "%41",
            "1x",
            "_",
        ] {
            let key = storage_key(name).unwrap();
            assert!(key.bytes().all(|b| kept(b) || b == b'%'), "{key}");
            assert_eq!(sql_name(&key).as_deref(), Some(name), "{key}");
        }
        assert_eq!(storage_key("items").unwrap(), "items");
        let in_schema = qualified("vecs", "Docs");
        assert_eq!(storage_key(&in_schema).as_deref(), Some("vecs%00Docs"));
        assert_eq!(sql_name("vecs%00Docs"), Some(in_schema.clone()));
        assert_eq!(split_qualified(&in_schema), (Some("vecs"), "Docs"));
        assert_eq!(qualified("public", "x"), "x");
        assert!(storage_key("a\0b\0c").is_none() && storage_key("\0b").is_none());
        assert_eq!(storage_key("My Docs").unwrap(), "My%20Docs");
        assert_eq!(storage_key("../x").unwrap(), "%2E%2E%2Fx");
    }

    #[test]
    fn what_no_name_makes_is_not_a_key() {
        for key in [
            "", "a.b", "a/b", "..", "%2e", "%4", "%41", "%ZZ", "%C3", "x%00",
        ] {
            assert!(!valid_collection_name(key), "{key:?}");
        }
        assert!(storage_key("").is_none());
        assert!(storage_key(&"x".repeat(64)).is_none());
        // NUL only joins a schema to a table, once, both named.
        assert!(storage_key("a\0b\0c").is_none() && storage_key("a\0").is_none());
        assert!(valid_collection_name(&"x".repeat(63)));
    }
}
