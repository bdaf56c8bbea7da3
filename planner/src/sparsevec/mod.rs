//! pgvector's `sparsevec`: a vector of up to 1,000,000,000 dimensions of which at most 16,000
//! are not zero, written `{1:1.5,3:2}/5` (1-based indices, the dimension after the slash).
//! In Arrow it is the struct `sparsevec_arrow_type` (dimension, 0-based indices, values):
//! [`columns`]; the text form is [`text`]'s.
//!
//! Read and written exactly as pgvector reads and writes it — text form, binary form
//! (`sparsevec_send`), the checks and their words — and compared and measured by pgvector's
//! rules: distances merge the two index lists with 4-byte float sums in pgvector's order;
//! comparison is element by element as if dense, then by dimension ([`SparseVec::pg_cmp`]).

use std::cmp::Ordering;

use vecraft_storage::schema::{MAX_DIMS, MAX_SPARSE_DIMS, MAX_SPARSE_NNZ};

use crate::error::VectorError;

mod columns;
mod text;

pub use columns::{declared_dims, sparse_array, sparse_rows, sparse_scalar};

/// One sparse vector: its dimension and its non-zero elements, indices 0-based, ascending and
/// unique, no value zero, NaN or infinite.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseVec {
    pub dim: usize,
    pub indices: Vec<i32>,
    pub values: Vec<f32>,
}

/// pgvector's `CheckDim`.
fn check_dim(dim: i64) -> Result<usize, VectorError> {
    if dim < 1 {
        return Err(VectorError::data(
            "sparsevec must have at least 1 dimension",
        ));
    }
    if dim > MAX_SPARSE_DIMS as i64 {
        let message = format!("sparsevec cannot have more than {MAX_SPARSE_DIMS} dimensions");
        return Err(VectorError::new("54000", message));
    }
    Ok(dim as usize)
}

/// pgvector's `CheckExpectedDim`: `sparsevec(n)` holds exactly `n` dimensions.
pub fn check_expected(typmod: Option<usize>, dim: usize) -> Result<(), VectorError> {
    match typmod {
        Some(n) if n != dim => Err(VectorError::data(format!(
            "expected {n} dimensions, not {dim}"
        ))),
        _ => Ok(()),
    }
}

/// pgvector's `CheckNnz`.
fn check_nnz(nnz: i64, dim: usize) -> Result<(), VectorError> {
    if nnz < 0 {
        let message = "sparsevec cannot have negative number of elements";
        return Err(VectorError::data(message));
    }
    if nnz > MAX_SPARSE_NNZ as i64 {
        let message = format!("sparsevec cannot have more than {MAX_SPARSE_NNZ} non-zero elements");
        return Err(VectorError::new("54000", message));
    }
    if nnz > dim as i64 {
        let message = "sparsevec cannot have more elements than dimensions";
        return Err(VectorError::new("54000", message));
    }
    Ok(())
}

/// pgvector's `CheckIndex` of the `i`th index.
fn check_index(indices: &[i32], i: usize, dim: usize) -> Result<(), VectorError> {
    let index = indices[i];
    if index < 0 || index as i64 >= dim as i64 {
        return Err(VectorError::data("sparsevec index out of bounds"));
    }
    if i > 0 && index < indices[i - 1] {
        return Err(VectorError::data(
            "sparsevec indices must be in ascending order",
        ));
    }
    if i > 0 && index == indices[i - 1] {
        return Err(VectorError::data(
            "sparsevec indices must not contain duplicates",
        ));
    }
    Ok(())
}

/// pgvector's `CheckElement`.
fn check_element(value: f32) -> Result<(), VectorError> {
    if value.is_nan() {
        return Err(VectorError::data("NaN not allowed in sparsevec"));
    }
    if value.is_infinite() {
        return Err(VectorError::data("infinite value not allowed in sparsevec"));
    }
    Ok(())
}

impl SparseVec {
    /// Whether this is a sparse vector pgvector would hold (a struct of the same shape can
    /// also be built in SQL): 1 to 1e9 dimensions, one value per index, indices ascending
    /// within the dimension, values non-zero and finite.
    fn check(&self) -> Result<(), VectorError> {
        check_dim(self.dim as i64)?;
        if self.indices.len() != self.values.len() {
            return Err(VectorError::data(
                "sparsevec indices and values differ in number",
            ));
        }
        check_nnz(self.indices.len() as i64, self.dim)?;
        for i in 0..self.indices.len() {
            check_index(&self.indices, i, self.dim)?;
        }
        for &x in &self.values {
            check_element(x)?;
        }
        Ok(())
    }

    /// A dense vector's non-zero elements (`vector_to_sparsevec`, `array_to_sparsevec`),
    /// with pgvector's checks in its order.
    pub fn from_dense(dense: &[f32], typmod: Option<usize>) -> Result<SparseVec, VectorError> {
        let dim = check_dim(dense.len() as i64)?;
        check_expected(typmod, dim)?;
        let nnz = dense.iter().filter(|x| **x != 0.0).count();
        check_nnz(nnz as i64, dim)?;
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        for (i, &x) in dense.iter().enumerate() {
            if x != 0.0 {
                indices.push(i as i32);
                values.push(x);
            }
        }
        for &x in &values {
            check_element(x)?;
        }
        Ok(SparseVec {
            dim,
            indices,
            values,
        })
    }

    /// The dense vector (`sparsevec_to_vector`, `…_to_halfvec`): `type_name`'s limit on
    /// dimensions and the declared dimension are checked first.
    pub fn to_dense(
        &self,
        type_name: &str,
        typmod: Option<usize>,
    ) -> Result<Vec<f32>, VectorError> {
        if self.dim > MAX_DIMS {
            let message = format!("{type_name} cannot have more than {MAX_DIMS} dimensions");
            return Err(VectorError::new("54000", message));
        }
        check_expected(typmod, self.dim)?;
        let mut dense = vec![0.0; self.dim];
        for (&i, &x) in self.indices.iter().zip(&self.values) {
            dense[i as usize] = x;
        }
        Ok(dense)
    }

    /// pgvector's binary form (`sparsevec_send`): dimension, count, a zero, the 0-based
    /// indices, then the values, all big-endian.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 8 * self.indices.len());
        out.extend_from_slice(&(self.dim as i32).to_be_bytes());
        out.extend_from_slice(&(self.indices.len() as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for i in &self.indices {
            out.extend_from_slice(&i.to_be_bytes());
        }
        for x in &self.values {
            out.extend_from_slice(&x.to_be_bytes());
        }
        out
    }

    /// pgvector's binary form read as `sparsevec_recv` reads it; `None` if the bytes are too
    /// few or too many for the counts they give.
    pub fn from_binary(
        bytes: &[u8],
        typmod: Option<usize>,
    ) -> Option<Result<SparseVec, VectorError>> {
        let word = |i: usize| -> Option<[u8; 4]> { bytes.get(4 * i..4 * i + 4)?.try_into().ok() };
        let dim = i32::from_be_bytes(word(0)?);
        let nnz = i32::from_be_bytes(word(1)?);
        let unused = i32::from_be_bytes(word(2)?);
        let checked = (|| {
            let dim = check_dim(i64::from(dim))?;
            check_nnz(i64::from(nnz), dim)?;
            check_expected(typmod, dim)?;
            if unused != 0 {
                let message = format!("expected unused to be 0, not {unused}");
                return Err(VectorError::data(message));
            }
            Ok(dim)
        })();
        let dim = match checked {
            Ok(dim) => dim,
            Err(e) => return Some(Err(e)),
        };
        let nnz = nnz as usize;
        if bytes.len() != 12 + 8 * nnz {
            return None;
        }
        let indices: Vec<i32> = (0..nnz)
            .map(|i| word(3 + i).map(i32::from_be_bytes))
            .collect::<Option<_>>()?;
        let values: Vec<f32> = (0..nnz)
            .map(|i| word(3 + nnz + i).map(f32::from_be_bytes))
            .collect::<Option<_>>()?;
        let checked = (|| {
            for i in 0..nnz {
                check_index(&indices, i, dim)?;
            }
            for &x in &values {
                check_element(x)?;
                if x == 0.0 {
                    let message = "binary representation of sparsevec cannot contain zero values";
                    return Err(VectorError::data(message));
                }
            }
            Ok(())
        })();
        Some(checked.map(|()| SparseVec {
            dim,
            indices,
            values,
        }))
    }

    /// pgvector's `sparsevec_cmp`: element by element as if both were dense, then the
    /// shorter first (values before dimensions, as PostgreSQL compares arrays).
    pub fn pg_cmp(&self, other: &SparseVec) -> Ordering {
        let (a, b) = (self, other);
        let nnz = a.indices.len().min(b.indices.len());
        for i in 0..nnz {
            let (ai, bi) = (a.indices[i], b.indices[i]);
            let (ax, bx) = (a.values[i], b.values[i]);
            if ai < bi {
                return if ax < 0.0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            if ai > bi {
                return if bx < 0.0 {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
            }
            match ax.partial_cmp(&bx) {
                Some(Ordering::Equal) | None => {}
                Some(order) => return order,
            }
        }
        if a.indices.len() < b.indices.len() && (b.indices[nnz] as usize) < a.dim {
            return if b.values[nnz] < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if a.indices.len() > b.indices.len() && (a.indices[nnz] as usize) < b.dim {
            return if a.values[nnz] < 0.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        a.dim.cmp(&b.dim)
    }

    /// A key whose byte order is [`SparseVec::pg_cmp`]'s, for sorting. Each element is a class
    /// byte (0 negative, 2 positive) and its index (inverted for positives: a positive
    /// element earlier makes a greater vector) and value; a 1 ends the elements, so a vector
    /// that ends where the other has a negative element is the greater. The dimension comes
    /// last. (Vectors of different dimensions whose extra elements lie past the shorter one's
    /// dimension are ordered by those elements rather than by dimension.)
    pub fn sort_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(9 * self.indices.len() + 5);
        for (&i, &x) in self.indices.iter().zip(&self.values) {
            let positive = x > 0.0;
            key.push(if positive { 2 } else { 0 });
            let index = if positive { !(i as u32) } else { i as u32 };
            key.extend_from_slice(&index.to_be_bytes());
            key.extend_from_slice(&ordered_bits(x).to_be_bytes());
        }
        key.push(1);
        key.extend_from_slice(&(self.dim as u32).to_be_bytes());
        key
    }

    /// The different-dimensions check of every binary function.
    pub fn check_same_dim(&self, other: &SparseVec) -> Result<(), VectorError> {
        if self.dim != other.dim {
            return Err(VectorError::data(format!(
                "different sparsevec dimensions {} and {}",
                self.dim, other.dim
            )));
        }
        Ok(())
    }

    /// `Σ (a - b)²` in 4-byte floats, summed in pgvector's order.
    pub fn l2_squared(&self, other: &SparseVec) -> f32 {
        self.merge(other, |a, b| (a - b) * (a - b), |x| x * x)
    }

    /// `Σ |a - b|`, as pgvector sums it.
    pub fn l1(&self, other: &SparseVec) -> f32 {
        self.merge(other, |a, b| (a - b).abs(), f32::abs)
    }

    /// `Σ a·b` over the indices both have.
    pub fn inner_product(&self, other: &SparseVec) -> f32 {
        self.merge(other, |a, b| a * b, |_| 0.0)
    }

    /// pgvector's cosine distance: `1 - a·b / sqrt(|a|²|b|²)`, kept in [0, 2]; NaN for a
    /// zero vector.
    pub fn cosine(&self, other: &SparseVec) -> f64 {
        let dot = f64::from(self.inner_product(other));
        let squares = |v: &SparseVec| v.values.iter().fold(0.0f32, |s, x| s + x * x);
        let similarity = dot / (f64::from(squares(self)) * f64::from(squares(other))).sqrt();
        if similarity.is_nan() {
            return f64::NAN;
        }
        1.0 - similarity.clamp(-1.0, 1.0)
    }

    /// pgvector's `l2_norm`, in doubles.
    pub fn norm(&self) -> f64 {
        let sum = self
            .values
            .iter()
            .fold(0.0, |sum, &x| sum + f64::from(x) * f64::from(x));
        sum.sqrt()
    }

    /// One pass over both index lists: `both(a, b)` where both have an element, `one(x)`
    /// where only one has.
    fn merge(
        &self,
        other: &SparseVec,
        both: impl Fn(f32, f32) -> f32,
        one: impl Fn(f32) -> f32,
    ) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0f32);
        let (a, b) = (self, other);
        while i < a.indices.len() && j < b.indices.len() {
            match a.indices[i].cmp(&b.indices[j]) {
                Ordering::Equal => {
                    sum += both(a.values[i], b.values[j]);
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    sum += one(a.values[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    sum += one(b.values[j]);
                    j += 1;
                }
            }
        }
        for &x in &a.values[i..] {
            sum += one(x);
        }
        for &x in &b.values[j..] {
            sum += one(x);
        }
        sum
    }
}

/// `x`'s bits, flipped so that unsigned order is numeric order.
fn ordered_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;
    use vecraft_storage::schema::sparsevec_arrow_type;

    use super::*;

    fn sv(text: &str) -> SparseVec {
        SparseVec::parse(text, None).unwrap()
    }

    #[test]
    fn text_round_trips_in_pgvector_form() {
        let v = sv(" { 3:2 , 1:1.5, 2:0 } / 5 ");
        assert_eq!(v.indices, [0, 2]);
        assert_eq!(v.values, [1.5, 2.0]);
        assert_eq!(v.format(), "{1:1.5,3:2}/5");
        assert_eq!(sv("{}/3").format(), "{}/3");
    }

    #[test]
    fn text_errors_in_pgvector_words() {
        let message = |t: &str| SparseVec::parse(t, None).unwrap_err().message;
        assert_eq!(
            message("{1:1}"),
            "invalid input syntax for type sparsevec: \"{1:1}\""
        );
        assert_eq!(message("{}/0"), "sparsevec must have at least 1 dimension");
        assert_eq!(message("{2:1}/1"), "sparsevec index out of bounds");
        assert_eq!(
            message("{1:1,1:2}/2"),
            "sparsevec indices must not contain duplicates"
        );
        assert_eq!(message("{1:NaN}/2"), "NaN not allowed in sparsevec");
        assert_eq!(
            message("{1:-inf}/2"),
            "infinite value not allowed in sparsevec"
        );
        assert_eq!(
            message("{1:1e39}/2"),
            "\"1e39\" is out of range for type sparsevec"
        );
        assert_eq!(
            message("{1:-1e-46}/2"),
            "\"-1e-46\" is out of range for type sparsevec"
        );
        assert_eq!(sv("{1:0e-46}/2").format(), "{}/2");
        assert_eq!(
            message("{}/1000000001"),
            "sparsevec cannot have more than 1000000000 dimensions"
        );
        let e = SparseVec::parse("{}/3", Some(4)).unwrap_err();
        assert_eq!(e.message, "expected 4 dimensions, not 3");
    }

    #[test]
    fn binary_round_trips_and_refuses_zeros() {
        let v = sv("{2:1.5,4:3.5}/5");
        assert_eq!(
            SparseVec::from_binary(&v.to_binary(), None)
                .unwrap()
                .unwrap(),
            v
        );
        let mut zero = sv("{1:1}/2").to_binary();
        zero[16..20].copy_from_slice(&0f32.to_be_bytes());
        let e = SparseVec::from_binary(&zero, None).unwrap().unwrap_err();
        assert_eq!(
            e.message,
            "binary representation of sparsevec cannot contain zero values"
        );
        assert!(SparseVec::from_binary(&zero[..18], None).is_none());
    }

    #[test]
    fn order_is_dense_order_and_the_key_agrees() {
        let texts = [
            "{1:-1}/3",
            "{2:-1}/3",
            "{}/3",
            "{3:1}/3",
            "{1:1,2:1,3:1}/3",
            "{1:1,2:2,3:3}/3",
            "{1:1,2:2}/3",
            "{1:2}/3",
            "{}/4",
        ];
        let mut by_cmp: Vec<SparseVec> = texts.iter().map(|t| sv(t)).collect();
        let mut by_key = by_cmp.clone();
        by_cmp.sort_by(SparseVec::pg_cmp);
        by_key.sort_by_key(SparseVec::sort_key);
        let formatted = |v: &[SparseVec]| v.iter().map(SparseVec::format).collect::<Vec<_>>();
        assert_eq!(
            formatted(&by_cmp),
            [
                "{1:-1}/3",
                "{2:-1}/3",
                "{}/3",
                "{}/4",
                "{3:1}/3",
                "{1:1,2:1,3:1}/3",
                "{1:1,2:2}/3",
                "{1:1,2:2,3:3}/3",
                "{1:2}/3"
            ]
        );
        assert_eq!(formatted(&by_key), formatted(&by_cmp));
    }

    #[test]
    fn distances_as_pgvector_computes_them() {
        let (a, b) = (sv("{1:1,3:3}/4"), sv("{2:2,3:1}/4"));
        assert_eq!(a.l2_squared(&b), 1.0 + 4.0 + 4.0);
        assert_eq!(a.l1(&b), 1.0 + 2.0 + 2.0);
        assert_eq!(a.inner_product(&b), 3.0);
        assert!((a.cosine(&b) - (1.0 - 3.0 / (10f64 * 5.0).sqrt())).abs() < 1e-12);
        assert!(a.cosine(&sv("{}/4")).is_nan());
        assert_eq!(sv("{1:3,2:4}/2").norm(), 5.0);
        assert!(sv("{}/2").norm().is_sign_positive());
    }

    #[test]
    fn arrow_round_trip_keeps_nulls() {
        let rows = vec![Some(sv("{1:1}/2")), None, Some(sv("{}/7"))];
        let array = sparse_array(&rows);
        assert_eq!(array.data_type(), &sparsevec_arrow_type());
        assert_eq!(sparse_rows(array.as_ref()).unwrap(), rows);
        // A struct of the same shape built otherwise is checked as it is read.
        let outside = SparseVec {
            dim: 3,
            indices: vec![5],
            values: vec![1.0],
        };
        let e = sparse_rows(sparse_array(&[Some(outside)]).as_ref()).unwrap_err();
        assert!(
            e.to_string().contains("sparsevec index out of bounds"),
            "{e}"
        );
    }
}
