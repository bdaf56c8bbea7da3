//! PostgreSQL's bit strings, `bit(n)` and `bit varying(n)`, as pgvector uses them for binary
//! quantization: `binary_quantize(v)` (a 1 for each element above zero), and the Hamming
//! (`<~>`) and Jaccard (`<%>`) distances between two bit strings of one length. In Arrow the
//! struct [`bit_arrow_type`]; read and written in PostgreSQL's text (`0101`) and binary
//! (`bit_send`) forms, fitted to a declared length as PostgreSQL fits them: an explicit
//! cast pads with zeros or truncates, a write to a column must have its length.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int32Array, StructArray};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use vecraft_storage::schema::{BITS_KEY, bit_arrow_type, bit_fields};

use crate::error::VectorError;

/// PostgreSQL's limit on a bit string's length.
pub const MAX_BITS: usize = 83_886_080;

/// One bit string: `bits` bits packed from the high bit of the first byte, the unused low
/// bits of the last byte zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitString {
    pub bits: usize,
    pub bytes: Vec<u8>,
}

/// The length a type declares: `bit(n)` exactly `n` bits, `bit varying(n)` at most `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitLength {
    Exactly(usize),
    AtMost(usize),
    Any,
}

impl BitLength {
    /// The length a field's metadata declares ([`BITS_KEY`]).
    pub fn of_field(field: &Field) -> Option<BitLength> {
        BitLength::parse(field.metadata().get(BITS_KEY)?)
    }

    /// The length a metadata value declares (what [`BitLength::metadata`] writes).
    pub fn parse(declared: &str) -> Option<BitLength> {
        Some(match declared.strip_prefix("..") {
            Some("") => BitLength::Any,
            Some(n) => BitLength::AtMost(n.parse().ok()?),
            None => BitLength::Exactly(declared.parse().ok()?),
        })
    }

    /// The metadata value that declares this length.
    pub fn metadata(self) -> String {
        match self {
            BitLength::Exactly(n) => n.to_string(),
            BitLength::AtMost(n) => format!("..{n}"),
            BitLength::Any => "..".into(),
        }
    }

    /// A field of bit strings of this length (`Any`: no metadata, so that such a value
    /// meets a NULL in one VALUES list).
    pub fn field(self, name: &str) -> Field {
        let field = Field::new(name, bit_arrow_type(), true);
        match self {
            BitLength::Any => field,
            _ => field.with_metadata([(BITS_KEY.to_string(), self.metadata())].into()),
        }
    }
}

impl BitString {
    /// `0101`, as `bit_in` reads it (PostgreSQL's `B'…'` and `X'…'` forms are not read).
    pub fn parse(text: &str) -> Result<BitString, VectorError> {
        let mut out = BitString {
            bits: 0,
            bytes: Vec::with_capacity(text.len().div_ceil(8)),
        };
        for c in text.chars() {
            let bit = match c {
                '0' => false,
                '1' => true,
                other => {
                    let message = format!("\"{other}\" is not a valid binary digit");
                    return Err(VectorError::new("22P02", message));
                }
            };
            out.push(bit);
        }
        if out.bits > MAX_BITS {
            let message = format!("bit string length exceeds the maximum allowed ({MAX_BITS})");
            return Err(VectorError::new("54000", message));
        }
        Ok(out)
    }

    /// Appends one bit.
    pub fn push(&mut self, bit: bool) {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.last_mut().expect("a byte for every 8 bits");
            *last |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
    }

    pub fn get(&self, i: usize) -> bool {
        debug_assert!(i < self.bits);
        self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// `0101`.
    pub fn format(&self) -> String {
        (0..self.bits)
            .map(|i| if self.get(i) { '1' } else { '0' })
            .collect()
    }

    /// PostgreSQL's binary form (`bit_send`): the length in bits, then the bytes.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bytes.len());
        out.extend_from_slice(&(self.bits as i32).to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// PostgreSQL's binary form read as `bit_recv` reads it; `None` if malformed.
    pub fn from_binary(bytes: &[u8]) -> Option<BitString> {
        let bits = i32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let bits = usize::try_from(bits).ok().filter(|b| *b <= MAX_BITS)?;
        let packed = bytes.get(4..)?;
        if packed.len() != bits.div_ceil(8) {
            return None;
        }
        let mut out = BitString {
            bits,
            bytes: packed.to_vec(),
        };
        out.clear_padding();
        Some(out)
    }

    fn clear_padding(&mut self) {
        if let (Some(last), used @ 1..) = (self.bytes.last_mut(), self.bits % 8) {
            *last &= 0xffu8 << (8 - used);
        }
    }

    /// This string in a value of `length`: an explicit cast (`explicit`) pads with zeros or
    /// truncates to `bit(n)` and truncates to `bit varying(n)`; a write refuses any other
    /// length, with PostgreSQL's 22026.
    pub fn fit(mut self, length: BitLength, explicit: bool) -> Result<BitString, VectorError> {
        match length {
            BitLength::Any => {}
            BitLength::Exactly(n) if self.bits != n => {
                if !explicit {
                    let message = format!(
                        "bit string length {} does not match type bit({n})",
                        self.bits
                    );
                    return Err(VectorError::new("22026", message));
                }
                self.bytes.resize(n.div_ceil(8), 0);
                self.bits = n;
                self.clear_padding();
            }
            BitLength::AtMost(n) if self.bits > n => {
                if !explicit {
                    let message = format!("bit string too long for type bit varying({n})");
                    return Err(VectorError::new("22001", message));
                }
                self.bytes.truncate(n.div_ceil(8));
                self.bits = n;
                self.clear_padding();
            }
            _ => {}
        }
        Ok(self)
    }

    /// pgvector's `binary_quantize`: a 1 for each element above zero.
    pub fn quantize(v: &[f32]) -> BitString {
        let mut out = BitString {
            bits: 0,
            bytes: Vec::with_capacity(v.len().div_ceil(8)),
        };
        for &x in v {
            out.push(x > 0.0);
        }
        out
    }

    fn check_same_length(&self, other: &BitString) -> Result<(), VectorError> {
        if self.bits != other.bits {
            let message = format!("different bit lengths {} and {}", self.bits, other.bits);
            return Err(VectorError::data(message));
        }
        Ok(())
    }

    /// The number of positions where the two differ (pgvector's `hamming_distance`).
    pub fn hamming(&self, other: &BitString) -> Result<f64, VectorError> {
        self.check_same_length(other)?;
        let ones: u32 = self
            .bytes
            .iter()
            .zip(&other.bytes)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        Ok(f64::from(ones))
    }

    /// `1 - |a ∧ b| / |a ∨ b|`, 1 when no bit is set in both (pgvector's `jaccard_distance`).
    pub fn jaccard(&self, other: &BitString) -> Result<f64, VectorError> {
        self.check_same_length(other)?;
        let count = |f: fn(u8, u8) -> u8| -> u64 {
            self.bytes
                .iter()
                .zip(&other.bytes)
                .map(|(a, b)| u64::from(f(*a, *b).count_ones()))
                .sum()
        };
        let (both, a, b) = (count(|a, b| a & b), count(|a, _| a), count(|_, b| b));
        if both == 0 {
            return Ok(1.0);
        }
        Ok(1.0 - both as f64 / (a + b - both) as f64)
    }
}

/// A column of bit strings, one per row (`None` for NULL).
pub fn bit_array(rows: &[Option<BitString>]) -> ArrayRef {
    let bytes: BinaryArray = rows
        .iter()
        .map(|r| Some(r.as_ref().map_or(&[][..], |b| &b.bytes[..])))
        .collect();
    let bits: Int32Array = rows
        .iter()
        .map(|r| Some(r.as_ref().map_or(0, |b| b.bits as i32)))
        .collect();
    let nulls = rows
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(rows.iter().map(Option::is_some)));
    let columns: Vec<ArrayRef> = vec![Arc::new(bytes), Arc::new(bits)];
    Arc::new(StructArray::new(bit_fields(), columns, nulls))
}

/// One bit string (or NULL) as a constant.
pub fn bit_scalar(value: Option<BitString>) -> Result<ScalarValue> {
    ScalarValue::try_from_array(&bit_array(&[value]), 0)
}

/// The rows of a column of bit strings.
pub fn bit_rows(array: &dyn Array) -> Result<Vec<Option<BitString>>> {
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; array.len()]);
    }
    if array.data_type() != &bit_arrow_type() {
        return exec_err!("expected a bit string, found {}", array.data_type());
    }
    let structs = array.as_struct();
    let bytes = structs.column(0).as_binary::<i32>();
    let bits = structs.column(1).as_primitive::<Int32Type>();
    let mut rows = Vec::with_capacity(structs.len());
    for row in 0..structs.len() {
        if structs.is_null(row) {
            rows.push(None);
            continue;
        }
        // A struct of the same shape can be built in SQL: its length must fit its bytes.
        let length = usize::try_from(bits.value(row)).ok();
        let packed = bytes.value(row);
        let Some(length) = length.filter(|n| n.div_ceil(8) == packed.len()) else {
            return Err(VectorError::data("bit string length does not match its bytes").into());
        };
        let mut b = BitString {
            bits: length,
            bytes: packed.to_vec(),
        };
        b.clear_padding();
        rows.push(Some(b));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(text: &str) -> BitString {
        BitString::parse(text).unwrap()
    }

    #[test]
    fn text_and_binary_round_trip() {
        let b = bits("1011000011");
        assert_eq!(b.bytes, [0b1011_0000, 0b1100_0000]);
        assert_eq!(b.format(), "1011000011");
        assert_eq!(BitString::from_binary(&b.to_binary()), Some(b));
        assert_eq!(bits("").format(), "");
        let e = BitString::parse("012").unwrap_err();
        assert_eq!(e.message, "\"2\" is not a valid binary digit");
    }

    #[test]
    fn quantize_as_pgvector() {
        let v = [0.0, 0.1, -0.2, -0.3, 0.4, 0.5, 0.6, -0.7, 0.8, -0.9, 1.0];
        assert_eq!(BitString::quantize(&v).format(), "01001110101");
    }

    #[test]
    fn fit_pads_truncates_or_refuses() {
        let fit = |t: &str, l, explicit| bits(t).fit(l, explicit).map(|b| b.format());
        assert_eq!(fit("0101", BitLength::Exactly(3), true).unwrap(), "010");
        assert_eq!(fit("01", BitLength::Exactly(3), true).unwrap(), "010");
        assert_eq!(fit("0111", BitLength::AtMost(2), true).unwrap(), "01");
        assert_eq!(fit("01", BitLength::AtMost(3), false).unwrap(), "01");
        let e = fit("01", BitLength::Exactly(3), false).unwrap_err();
        assert_eq!(e.message, "bit string length 2 does not match type bit(3)");
        let e = fit("0111", BitLength::AtMost(2), false).unwrap_err();
        assert_eq!(e.message, "bit string too long for type bit varying(2)");
    }

    #[test]
    fn distances_as_pgvector() {
        assert_eq!(bits("111").hamming(&bits("100")).unwrap(), 2.0);
        assert_eq!(bits("1111").jaccard(&bits("1100")).unwrap(), 0.5);
        assert_eq!(bits("1111").jaccard(&bits("0000")).unwrap(), 1.0);
        assert_eq!(bits("").jaccard(&bits("")).unwrap(), 1.0);
        let e = bits("111").hamming(&bits("00")).unwrap_err();
        assert_eq!(e.message, "different bit lengths 3 and 2");
    }

    #[test]
    fn arrow_round_trip_keeps_nulls() {
        let rows = vec![Some(bits("101")), None, Some(bits(""))];
        assert_eq!(bit_rows(bit_array(&rows).as_ref()).unwrap(), rows);
        // A struct whose length does not fit its bytes (built in SQL) is refused.
        let short = BitString {
            bits: 90,
            bytes: vec![0],
        };
        assert!(bit_rows(bit_array(&[Some(short)]).as_ref()).is_err());
    }
}
