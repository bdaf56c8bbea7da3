//! One row of COPY's text and CSV formats: splitting fields, undoing escapes and quotes,
//! telling NULL from the empty string.

use pgwire::error::PgWireResult;

use crate::errors::user_error;

/// Splits one line of text COPY, undoing its backslash escapes.
pub(super) fn text_fields(
    line: &str,
    delimiter: u8,
    null: &str,
    row: &mut Vec<Option<String>>,
) -> PgWireResult<()> {
    for raw in line.split(delimiter as char) {
        if raw == null {
            row.push(None);
            continue;
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('v') => out.push('\u{b}'),
                Some(other) => out.push(other),
                None => return Err(user_error("22P04", "COPY line ends in a backslash")),
            }
        }
        row.push(Some(out));
    }
    Ok(())
}

/// One CSV record from the start of `data`, if complete: its fields, and the bytes it used.
pub(super) fn csv_record(
    data: &[u8],
    delimiter: u8,
    quote: u8,
    escape: u8,
    null: &str,
    row: &mut Vec<Option<String>>,
) -> PgWireResult<Option<usize>> {
    let mut field = Vec::new();
    let (mut quoted, mut in_quotes, mut i) = (false, false, 0);
    let finish =
        |field: &mut Vec<u8>, quoted: bool, row: &mut Vec<Option<String>>| -> PgWireResult<()> {
            let text = String::from_utf8(std::mem::take(field))
                .map_err(|_| user_error("22021", "invalid UTF-8 in COPY data"))?;
            row.push(if !quoted && text == null {
                None
            } else {
                Some(text)
            });
            Ok(())
        };
    while i < data.len() {
        let b = data[i];
        if in_quotes {
            i += 1;
            if b == escape && escape != quote {
                // An escape takes the next quote or escape literally.
                match data.get(i) {
                    None => return Ok(None),
                    Some(&n) if n == quote || n == escape => {
                        field.push(n);
                        i += 1;
                    }
                    Some(_) => field.push(b),
                }
            } else if b == quote {
                match data.get(i) {
                    None => return Ok(None), // a closing quote, or the first of a doubled one
                    Some(&n) if n == quote && escape == quote => {
                        field.push(quote);
                        i += 1;
                    }
                    Some(_) => in_quotes = false,
                }
            } else {
                field.push(b);
            }
            continue;
        }
        if b == quote {
            in_quotes = true;
            quoted = true;
        } else if b == delimiter {
            finish(&mut field, quoted, row)?;
            quoted = false;
        } else if b == b'\n' {
            if field.last() == Some(&b'\r') && !quoted {
                field.pop();
            }
            finish(&mut field, quoted, row)?;
            return Ok(Some(i + 1));
        } else {
            field.push(b);
        }
        i += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(data: &str) -> Option<(Vec<Option<String>>, usize)> {
        let mut row = Vec::new();
        csv_record(data.as_bytes(), b',', b'"', b'"', "", &mut row)
            .unwrap()
            .map(|n| (row, n))
    }

    #[test]
    fn csv_records_follow_postgres_quoting() {
        let (row, used) = csv("1,\"[1,2,3]\",,\"\"\nnext").unwrap();
        assert_eq!(
            row,
            vec![
                Some("1".into()),
                Some("[1,2,3]".into()),
                None,
                Some("".into())
            ]
        );
        assert_eq!(used, 16);
        let (row, _) = csv("\"a \"\"quoted\"\" word\",x\n").unwrap();
        assert_eq!(row[0].as_deref(), Some("a \"quoted\" word"));
        assert!(
            csv("1,\"[1,2").is_none(),
            "an open quote waits for more data"
        );
        assert!(csv("1,2").is_none(), "a record ends at its newline");
    }

    /// COPY data as clients send it, and mangled: splitting never panics, and a CSV record
    /// never claims more bytes than it was given.
    #[test]
    fn fuzz_copy_lines() {
        let seeds: &[&[u8]] = &[
            b"1,\"[1,2,3]\",,\"\"\nnext,\"a \"\"b\"\" c\"\r\n",
            b"1\t[1,2]\t\\N\ta\\tb\n2\t[3,4]\t\\.\n",
        ];
        vecraft_storage::fuzz::run("copy_lines", seeds, |input| {
            let mut row = Vec::new();
            for (delimiter, quote, escape) in [(b',', b'"', b'"'), (b'\t', b'\'', b'\\')] {
                row.clear();
                if let Ok(Some(used)) = csv_record(input, delimiter, quote, escape, "", &mut row) {
                    assert!(used <= input.len());
                }
            }
            row.clear();
            let _ = text_fields(&String::from_utf8_lossy(input), b'\t', "\\N", &mut row);
        });
    }

    #[test]
    fn text_fields_undo_escapes_and_read_nulls() {
        let mut row = Vec::new();
        text_fields("1\t[1,2]\t\\N\ta\\tb", b'\t', "\\N", &mut row).unwrap();
        assert_eq!(
            row,
            vec![
                Some("1".into()),
                Some("[1,2]".into()),
                None,
                Some("a\tb".into())
            ]
        );
    }
}
