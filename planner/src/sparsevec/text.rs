//! pgvector's text form of a sparse vector, `{1:1.5,3:2}/5`, read as `sparsevec_in` reads it
//! (whitespace anywhere between the parts, indices in any order, zeros dropped) and written
//! as `sparsevec_out` writes it.

use super::{SparseVec, check_dim, check_element, check_expected, check_index};
use crate::error::VectorError;
use crate::vector_text::format_real;
use vecraft_storage::schema::MAX_SPARSE_NNZ;

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// A cursor over the text of a sparse vector, as `sparsevec_in` walks it.
struct Reader<'a> {
    text: &'a str,
    rest: &'a str,
}

impl<'a> Reader<'a> {
    fn syntax(&self) -> VectorError {
        VectorError::syntax_of("sparsevec", self.text)
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches(is_space);
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// An integer as `strtol` reads it, kept within `i32`'s range as pgvector keeps it.
    fn integer(&mut self) -> Result<i64, VectorError> {
        self.skip_space();
        let sign = usize::from(self.rest.starts_with(['+', '-']));
        let digits = self.rest[sign..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            return Err(self.syntax());
        }
        let (number, rest) = self.rest.split_at(sign + digits);
        self.rest = rest;
        let value = number.parse::<i64>().unwrap_or(if number.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
        Ok(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)))
    }

    /// A value as `strtof` reads it (decimal, exponent, `inf`, `nan`), then pgvector's checks.
    fn value(&mut self) -> Result<f32, VectorError> {
        self.skip_space();
        let end = self
            .rest
            .find(|c: char| c == ',' || c == '}' || is_space(c))
            .unwrap_or(self.rest.len());
        let (item, rest) = self.rest.split_at(end);
        self.rest = rest;
        let unsigned = item.strip_prefix(['+', '-']).unwrap_or(item);
        let value = match unsigned.to_ascii_lowercase().as_str() {
            "nan" => f32::NAN,
            "inf" | "infinity" => f32::INFINITY,
            _ if unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                let value: f32 = item.parse().map_err(|_| self.syntax())?;
                // strtof's range error: past the largest real, or a non-zero number that
                // rounds to zero.
                let mantissa = unsigned.split(['e', 'E']).next().unwrap_or("");
                let underflow =
                    value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
                if value.is_infinite() || underflow {
                    let message = format!("\"{item}\" is out of range for type sparsevec");
                    return Err(VectorError::out_of_range(message));
                }
                value
            }
            _ => return Err(self.syntax()),
        };
        check_element(value)?;
        Ok(value)
    }
}

impl SparseVec {
    /// pgvector's text form read as `sparsevec_in` reads it (`typmod`: a declared dimension).
    pub fn parse(text: &str, typmod: Option<usize>) -> Result<SparseVec, VectorError> {
        let max_nnz = 1 + text.matches(',').count();
        if max_nnz > MAX_SPARSE_NNZ {
            let message =
                format!("sparsevec cannot have more than {MAX_SPARSE_NNZ} non-zero elements");
            return Err(VectorError::new("54000", message));
        }
        let mut r = Reader { text, rest: text };
        if !r.eat('{') {
            let detail = "Vector contents must start with \"{\".";
            return Err(r.syntax().with_detail(detail));
        }
        let mut elements = Vec::new();
        if !r.eat('}') {
            loop {
                let index = r.integer()?;
                if !r.eat(':') {
                    return Err(r.syntax());
                }
                let value = r.value()?;
                // Zeros are not kept; indices become 0-based.
                if value != 0.0 {
                    elements.push((index - 1, value));
                }
                if r.eat('}') {
                    break;
                }
                if !r.eat(',') {
                    return Err(r.syntax());
                }
            }
        }
        if !r.eat('/') {
            return Err(r.syntax().with_detail("Unexpected end of input."));
        }
        let dim = r.integer()?;
        r.skip_space();
        if !r.rest.is_empty() {
            return Err(r.syntax().with_detail("Junk after closing."));
        }
        let dim = check_dim(dim)?;
        check_expected(typmod, dim)?;
        elements.sort_by_key(|&(index, _)| index);
        let indices: Vec<i32> = elements
            .iter()
            .map(|&(i, _)| i.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
            .collect();
        for i in 0..indices.len() {
            check_index(&indices, i, dim)?;
        }
        let values = elements.into_iter().map(|(_, v)| v).collect();
        Ok(SparseVec {
            dim,
            indices,
            values,
        })
    }

    /// pgvector's text form: `{1:1.5,3:2}/5`.
    pub fn format(&self) -> String {
        let mut out = String::with_capacity(4 + self.indices.len() * 12);
        out.push('{');
        for (i, (index, value)) in self.indices.iter().zip(&self.values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&(index + 1).to_string());
            out.push(':');
            out.push_str(&format_real(*value));
        }
        out.push_str("}/");
        out.push_str(&self.dim.to_string());
        out
    }
}
