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

/// The key of the collection named `name`; `None` for a name PostgreSQL would not keep
/// (empty, longer than [`MAX_NAME_BYTES`], or holding NUL).
pub fn storage_key(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0') {
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
        assert!(storage_key("a\0b").is_none());
        assert!(valid_collection_name(&"x".repeat(63)));
    }
}
