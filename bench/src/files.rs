//! The dataset file formats: NumPy `.npy` (2-d, float32 vectors or integer neighbour ids) and
//! the ANN-benchmarks `.fvecs` / `.ivecs` (each row: a little-endian i32 count, then that many
//! f32 or i32 values).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

use crate::vectors::Vectors;

/// Vectors from `.npy` (float32) or `.fvecs`, by the file's extension.
pub fn read_vectors(path: &Path) -> Result<Vectors> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = match extension(path) {
        "npy" => npy_f32(&bytes),
        "fvecs" => vecs(&bytes, f32::from_le_bytes).map(|(dim, data)| Vectors::new(dim, data)),
        other => bail!("vectors must be in .npy or .fvecs, not .{other}"),
    };
    parsed.with_context(|| format!("reading {}", path.display()))
}

/// Rows of neighbour ids from `.npy` (int32, int64 or uint32) or `.ivecs`.
pub fn read_ids(path: &Path) -> Result<Vec<Vec<u32>>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = match extension(path) {
        "npy" => npy_ids(&bytes),
        "ivecs" => vecs(&bytes, i32::from_le_bytes).and_then(|(dim, data)| {
            let ids = data
                .into_iter()
                .map(|i| u32::try_from(i).context("a negative id"));
            let ids = ids.collect::<Result<Vec<u32>>>()?;
            Ok(ids.chunks_exact(dim).map(<[u32]>::to_vec).collect())
        }),
        other => bail!("neighbour ids must be in .npy or .ivecs, not .{other}"),
    };
    parsed.with_context(|| format!("reading {}", path.display()))
}

/// Writes rows of ids as `.ivecs` (the ground-truth cache), through a temporary file so a
/// reader never sees half of one.
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> Result<()> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| 4 + 4 * r.len()).sum());
    for row in rows {
        out.extend_from_slice(&(row.len() as i32).to_le_bytes());
        for id in row {
            out.extend_from_slice(&(*id as i32).to_le_bytes());
        }
    }
    write_atomically(path, &out)
}

/// Writes vectors as a float32 `.npy` file.
pub fn write_npy(path: &Path, vectors: &Vectors) -> Result<()> {
    let shape = format!("({}, {})", vectors.len(), vectors.dim());
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + vectors.as_slice().len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in vectors.as_slice() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    write_atomically(path, &out)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut file =
        fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// `.fvecs`/`.ivecs`: every row repeats its length, which must not change.
fn vecs<T>(bytes: &[u8], value: impl Fn([u8; 4]) -> T) -> Result<(usize, Vec<T>)> {
    let word = |at: usize| -> [u8; 4] { bytes[at..at + 4].try_into().expect("four bytes") };
    ensure!(bytes.len() >= 4, "the file is empty");
    let dim = i32::from_le_bytes(word(0));
    ensure!(dim > 0, "a row of {dim} values");
    let dim = dim as usize;
    let row_bytes = 4 + 4 * dim;
    ensure!(
        bytes.len().is_multiple_of(row_bytes),
        "{} bytes is not a whole number of rows of {dim} values",
        bytes.len()
    );
    let mut data = Vec::with_capacity(bytes.len() / row_bytes * dim);
    for (i, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let count = i32::from_le_bytes(row[..4].try_into().expect("four bytes"));
        ensure!(
            count as usize == dim,
            "row {i} has {count} values, row 0 has {dim}"
        );
        data.extend((1..=dim).map(|j| value(word(i * row_bytes + 4 * j))));
    }
    Ok((dim, data))
}

/// The parts of an `.npy` header the readers need.
#[derive(Debug, PartialEq)]
struct NpyHeader {
    descr: String,
    rows: usize,
    cols: usize,
    /// Offset of the first data byte.
    data_at: usize,
}

fn npy_header(bytes: &[u8]) -> Result<NpyHeader> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(b"\x93NUMPY"),
        "not an .npy file"
    );
    let (length, text_at) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "a truncated .npy header");
            (
                u32::from_le_bytes(bytes[8..12].try_into().expect("four bytes")) as usize,
                12,
            )
        }
        v => bail!(".npy version {v} is not supported"),
    };
    ensure!(bytes.len() >= text_at + length, "a truncated .npy header");
    let text = std::str::from_utf8(&bytes[text_at..text_at + length])?;
    let field = |key: &str| -> Result<&str> {
        let at = text
            .find(&format!("'{key}':"))
            .with_context(|| format!("no '{key}' in {text}"))?;
        Ok(text[at + key.len() + 3..].trim_start())
    };
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "Fortran-ordered arrays are not supported"
    );
    let descr = field("descr")?;
    let descr = descr
        .split('\'')
        .nth(1)
        .context("a malformed 'descr'")?
        .to_string();
    let shape = field("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .context("a malformed 'shape'")?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .with_context(|| format!("a malformed shape ({shape})"))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        bail!("a {}-d array; a 2-d one was expected", dims.len());
    };
    Ok(NpyHeader {
        descr,
        rows,
        cols,
        data_at: text_at + length,
    })
}

/// The data bytes of a 2-d array whose elements are `width` bytes.
fn npy_body<'a>(bytes: &'a [u8], header: &NpyHeader, width: usize) -> Result<&'a [u8]> {
    let size = header
        .rows
        .checked_mul(header.cols)
        .and_then(|n| n.checked_mul(width))
        .context("a shape too large to hold")?;
    let body = &bytes[header.data_at..];
    ensure!(
        body.len() == size,
        "{} data bytes, the shape says {size}",
        body.len()
    );
    Ok(body)
}

fn npy_f32(bytes: &[u8]) -> Result<Vectors> {
    let header = npy_header(bytes)?;
    ensure!(
        header.descr == "<f4",
        "float32 vectors (<f4) were expected, not {}",
        header.descr
    );
    ensure!(header.cols > 0, "vectors of no dimensions");
    let body = npy_body(bytes, &header, 4)?;
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
        .collect();
    Ok(Vectors::new(header.cols, data))
}

fn npy_ids(bytes: &[u8]) -> Result<Vec<Vec<u32>>> {
    let header = npy_header(bytes)?;
    let ids: Vec<u32> = match header.descr.as_str() {
        "<i4" => npy_body(bytes, &header, 4)?
            .chunks_exact(4)
            .map(|b| u32::try_from(i32::from_le_bytes(b.try_into().expect("4"))))
            .collect::<Result<_, _>>()
            .context("a negative id")?,
        "<u4" => npy_body(bytes, &header, 4)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
            .collect(),
        "<i8" => npy_body(bytes, &header, 8)?
            .chunks_exact(8)
            .map(|b| u32::try_from(i64::from_le_bytes(b.try_into().expect("8"))))
            .collect::<Result<_, _>>()
            .context("an id outside 0..2^32")?,
        other => bail!("integer ids (<i4, <u4, <i8) were expected, not {other}"),
    };
    ensure!(header.cols > 0, "rows of no neighbours");
    Ok(ids.chunks_exact(header.cols).map(<[u32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn npy_vectors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let vectors = Vectors::new(3, vec![1.0, -2.5, 3.0, 0.0, 1e-3, 7.0]);
        write_npy(&path, &vectors).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            npy_header(&bytes).unwrap().data_at % 64,
            0,
            "the header is padded"
        );
        assert_eq!(read_vectors(&path).unwrap(), vectors);
    }

    #[test]
    fn npy_reads_numpys_own_layout() {
        // As numpy writes np.array([[1, 2], [3, 4]], dtype=np.int64).
        let body: Vec<u8> = [1i64, 2, 3, 4]
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        assert_eq!(
            npy_ids(&npy("<i8", "(2, 2)", &body)).unwrap(),
            vec![vec![1, 2], vec![3, 4]]
        );
        let body: Vec<u8> = [7i32, 9].iter().flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(
            npy_ids(&npy("<i4", "(1, 2)", &body)).unwrap(),
            vec![vec![7, 9]]
        );
        let floats: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(
            npy_f32(&npy("<f4", "(2, 1)", &floats)).unwrap().as_slice(),
            &[0.5, 1.5]
        );
    }

    #[test]
    fn npy_refuses_what_it_cannot_read() {
        let floats = [0u8; 16];
        let error = |bytes: Vec<u8>| npy_f32(&bytes).unwrap_err().to_string();
        assert!(error(npy("<f8", "(2, 1)", &floats)).contains("float32"));
        assert!(error(npy("<f4", "(4,)", &floats)).contains("1-d"));
        assert!(error(npy("<f4", "(2, 3)", &floats)).contains("16 data bytes"));
        assert!(error(b"PK\x03\x04 a zip file".to_vec()).contains("not an .npy"));
        assert!(error(npy("<f4", "[2, 2]", &floats)).contains("malformed 'shape'"));
        let huge = format!("({}, {})", usize::MAX, 3);
        assert!(error(npy("<f4", &huge, &floats)).contains("too large"));
        let negative: Vec<u8> = (-1i32).to_le_bytes().to_vec();
        assert!(npy_ids(&npy("<i4", "(1, 1)", &negative)).is_err());
    }

    #[test]
    fn fvecs_and_ivecs_are_read_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let fvecs = dir.path().join("v.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            bytes.extend_from_slice(&2i32.to_le_bytes());
            row.iter()
                .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        }
        fs::write(&fvecs, &bytes).unwrap();
        assert_eq!(
            read_vectors(&fvecs).unwrap(),
            Vectors::new(2, vec![1.0, 2.0, 3.0, 4.0])
        );

        let ivecs = dir.path().join("gt.ivecs");
        let rows = vec![vec![5, 1, 9], vec![0, 2, 4]];
        write_ivecs(&ivecs, &rows).unwrap();
        assert_eq!(read_ids(&ivecs).unwrap(), rows);

        // A row whose count differs from the first row's is refused.
        let mut uneven = bytes.clone();
        uneven[12..16].copy_from_slice(&3i32.to_le_bytes());
        fs::write(&fvecs, &uneven).unwrap();
        assert!(format!("{:#}", read_vectors(&fvecs).unwrap_err()).contains("row 1 has 3"));
    }
}
