//! The on-disk file of one vector column of a sealed segment: vectors, inverse norms, the
//! flat HNSW graph and the SQ8 codes its walk scores, each section 64-byte aligned so it can be
//! used in place from an mmap.
//!
//! ```text
//! header (64 bytes, little endian)
//!   0 magic "VCRFTVEC"   8 version u32   12 dims u32   16 rows u64
//!  24 metric u8  25 has_graph u8  26 max_level u8  27 has_codes u8  28 m u16  30 m0 u16
//!  32 entry u32  36 -   40 upper_len u64   48 body_crc32c u32   52..64 reserved
//! body: vectors [rows * dims] f32 | inv_norms [rows] f32
//!       | level0 [rows * (1 + m0)] u32 | levels [rows] u8 | upper_offsets [rows] u32
//!       | upper [upper_len] u32              (graph sections only when has_graph = 1)
//!       | sq8_lo [dims] f32 | sq8_step [dims] f32 | sq8_codes [rows * dims] u8
//!                                            (code sections only when has_codes = 1)
//! ```
//! The CRC covers the header (with its CRC field zeroed) and the whole body, and is checked
//! when the file is opened. `has_codes` sits in a byte that files written before codes were
//! stored left 0, so those files read as files without codes (`index/sq8.rs`).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::index::graph::{GraphShape, HnswGraph};
use crate::index::sq8::Sq8;
use crate::index::vectors::{Backing, VectorStore};

const MAGIC: &[u8; 8] = b"VCRFTVEC";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const ALIGN: usize = 64;

#[cfg(not(target_endian = "little"))]
compile_error!("vector files are little endian and read in place");

/// A vector column as stored: the vectors and, when built, its graph and the graph's metric.
pub struct ColumnFile {
    pub vectors: VectorStore,
    pub graph: Option<(Metric, HnswGraph)>,
}

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::L2 => 1,
        Metric::Cosine => 2,
        Metric::InnerProduct => 3,
        Metric::L1 => 4,
    }
}

fn metric_from_code(code: u8) -> Option<Metric> {
    Some(match code {
        1 => Metric::L2,
        2 => Metric::Cosine,
        3 => Metric::InnerProduct,
        4 => Metric::L1,
        _ => return None,
    })
}

/// The bytes of a slice of plain data (f32, u32 or u8).
pub(crate) fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is f32, u32, u16 or u8 here: plain data without padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// Streams sections out, padding each to `ALIGN` and folding the body into a CRC.
struct SectionWriter {
    out: BufWriter<File>,
    offset: usize,
    crc: u32,
}

impl SectionWriter {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.offset += bytes.len();
        let pad = (ALIGN - self.offset % ALIGN) % ALIGN;
        let zeros = [0u8; ALIGN];
        self.out.write_all(&zeros[..pad])?;
        self.crc = crc32c::crc32c_append(self.crc, &zeros[..pad]);
        self.offset += pad;
        Ok(())
    }
}

/// Writes `column` to `path` and fsyncs it.
pub fn write(path: &Path, column: &ColumnFile) -> Result<()> {
    let file = File::create(path).ctx("create", path)?;
    let mut w = SectionWriter {
        out: BufWriter::with_capacity(1 << 20, file),
        offset: HEADER_BYTES,
        crc: 0,
    };
    let body = |w: &mut SectionWriter| -> std::io::Result<()> {
        w.out.write_all(&[0u8; HEADER_BYTES])?;
        w.put(as_bytes(column.vectors.data()))?;
        w.put(as_bytes(column.vectors.inv_norms()))?;
        if let Some((_, g)) = &column.graph {
            w.put(as_bytes(g.level0.as_slice()))?;
            w.put(as_bytes(g.levels.as_slice()))?;
            w.put(as_bytes(g.upper_offsets.as_slice()))?;
            w.put(as_bytes(g.upper.as_slice()))?;
            if let Some(codes) = &g.codes {
                w.put(as_bytes(codes.lo()))?;
                w.put(as_bytes(codes.step()))?;
                w.put(codes.codes())?;
            }
        }
        Ok(())
    };
    body(&mut w).ctx("write", path)?;
    let header = header_bytes(column, crc_with_header(w.crc, &header_bytes(column, 0)));
    let mut file = w
        .out
        .into_inner()
        .map_err(|e| Error::io("flush", path, e.into_error()))?;
    file.seek(SeekFrom::Start(0)).ctx("seek", path)?;
    file.write_all(&header).ctx("write header", path)?;
    file.sync_all().ctx("fsync", path)
}

fn header_bytes(column: &ColumnFile, crc: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(column.vectors.dims() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&(column.vectors.len() as u64).to_le_bytes());
    if let Some((metric, g)) = &column.graph {
        h[24] = metric_code(*metric);
        h[25] = 1;
        h[26] = g.shape.max_level;
        h[27] = u8::from(g.codes.is_some());
        h[28..30].copy_from_slice(&g.shape.m.to_le_bytes());
        h[30..32].copy_from_slice(&g.shape.m0.to_le_bytes());
        h[32..36].copy_from_slice(&g.shape.entry.to_le_bytes());
        h[40..48].copy_from_slice(&(g.upper.as_slice().len() as u64).to_le_bytes());
    }
    h[48..52].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The file's checksum: the body's CRC extended over the header with a zero CRC field.
fn crc_with_header(body_crc: u32, zeroed_header: &[u8]) -> u32 {
    crc32c::crc32c_append(body_crc, zeroed_header)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Nodes whose level-0 lists are checked between two hand-backs of their pages (`release`):
/// 64Ki nodes of `m0 = 32` are 8.6 MB.
const VALIDATE_NODES: u32 = 1 << 16;

/// The CRC of the body of `file` (`len_bytes` long), read through the page cache rather than
/// the map, so that reading every byte once does not make it this process's resident memory.
fn body_crc(file: &File, path: &Path, len_bytes: usize) -> Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut at) = (0, HEADER_BYTES);
    while at < len_bytes {
        let want = buf.len().min(len_bytes - at);
        let got = file
            .read_at(&mut buf[..want], at as u64)
            .ctx("read", path)?;
        if got == 0 {
            return Err(Error::corrupt(path, "shorter than its map"));
        }
        crc = crc32c::crc32c_append(crc, &buf[..got]);
        at += got;
    }
    Ok(crc)
}

/// Checks `graph` (read from `map`, its level-0 lists at `level0_at`) a slice of nodes at a
/// time, handing each slice's pages back after it, and every page at the end.
fn validate(graph: &HnswGraph, map: &Mmap, level0_at: usize) -> std::result::Result<(), String> {
    graph.validate_shape()?;
    let nodes = graph.shape.nodes;
    let list_bytes = (1 + graph.shape.m0 as usize) * 4;
    for start in (0..nodes).step_by(VALIDATE_NODES as usize) {
        let end = start.saturating_add(VALIDATE_NODES).min(nodes);
        graph.validate_nodes(start..end)?;
        let len = (end - start) as usize * list_bytes;
        release(map, level0_at + start as usize * list_bytes, len);
    }
    release(map, 0, map.len());
    Ok(())
}

/// Drops this process's pages of `map` in the range: opening touches every page of a graph to
/// check it, a search reads few of them, and the resident size should show what searches use.
/// The pages stay in the page cache, so a later read is a minor fault.
fn release(map: &Mmap, offset: usize, len: usize) {
    // SAFETY: `map` is a read-only shared mapping of a file nothing writes (see `open`);
    // MADV_DONTNEED on it only unmaps pages, and the next read maps the same bytes again.
    // No reference into the map is invalidated: the contents a reader sees do not change.
    let advised =
        unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
    debug_assert!(advised.is_ok(), "madvise of a range inside the map");
}

/// Maps `path`, verifies it, and returns the column reading straight from the map.
pub fn open(path: &Path) -> Result<ColumnFile> {
    let file = File::open(path).ctx("open", path)?;
    // SAFETY: segment files are immutable once written: nothing truncates or rewrites them
    // while they are mapped (compaction writes new files, and deletes old ones after readers
    // drop their Arcs; unlinking does not affect an existing map).
    let map = Arc::new(unsafe { Mmap::map(&file) }.ctx("mmap", path)?);
    let bad = |detail: &str| Error::corrupt(path, detail.to_string());
    if map.len() < HEADER_BYTES || &map[0..8] != MAGIC {
        return Err(bad("not a vector file"));
    }
    let h = &map[..HEADER_BYTES];
    if u32_at(h, 8) != VERSION {
        return Err(bad("unsupported vector file version"));
    }
    let mut zeroed = [0u8; HEADER_BYTES];
    zeroed.copy_from_slice(h);
    zeroed[48..52].fill(0);
    if crc_with_header(body_crc(&file, path, map.len())?, &zeroed) != u32_at(h, 48) {
        return Err(bad("checksum mismatch"));
    }
    let dims = u32_at(h, 12) as usize;
    let rows = usize::try_from(u64_at(h, 16)).map_err(|_| bad("row count"))?;
    if dims == 0 || rows > u32::MAX as usize {
        return Err(bad("dimensions or row count out of range"));
    }
    let mut at = HEADER_BYTES;
    let mut section = |len: usize, elem: usize| -> Result<(usize, usize)> {
        let start = at;
        let size = len.checked_mul(elem).ok_or_else(|| bad("section size"))?;
        at = align_up(start.checked_add(size).ok_or_else(|| bad("section size"))?);
        Ok((start, len))
    };
    let vec_sec = section(rows.checked_mul(dims).ok_or_else(|| bad("size"))?, 4)?;
    let norm_sec = section(rows, 4)?;
    let f32s = |(o, l): (usize, usize)| {
        Backing::<f32>::mapped(map.clone(), o, l).ok_or_else(|| bad("section out of range"))
    };
    let vectors = VectorStore::from_parts(dims, f32s(vec_sec)?, f32s(norm_sec)?);
    if h[25] == 0 {
        return Ok(ColumnFile {
            vectors,
            graph: None,
        });
    }
    let metric = metric_from_code(h[24]).ok_or_else(|| bad("unknown metric"))?;
    let shape = GraphShape {
        nodes: rows as u32,
        m: u16::from_le_bytes([h[28], h[29]]),
        m0: u16::from_le_bytes([h[30], h[31]]),
        max_level: h[26],
        entry: u32_at(h, 32),
    };
    let upper_len = usize::try_from(u64_at(h, 40)).map_err(|_| bad("upper size"))?;
    let l0 = section(
        rows.checked_mul(1 + shape.m0 as usize)
            .ok_or_else(|| bad("size"))?,
        4,
    )?;
    let lv = section(rows, 1)?;
    let uo = section(rows, 4)?;
    let up = section(upper_len, 4)?;
    let u32s = |(o, l): (usize, usize)| {
        Backing::<u32>::mapped(map.clone(), o, l).ok_or_else(|| bad("section out of range"))
    };
    let bytes = |(o, l): (usize, usize)| {
        Backing::<u8>::mapped(map.clone(), o, l).ok_or_else(|| bad("section out of range"))
    };
    let levels = bytes(lv)?;
    let codes = match h[27] {
        0 => None,
        1 => {
            let lo = f32s(section(dims, 4)?)?.as_slice().to_vec();
            let step = f32s(section(dims, 4)?)?.as_slice().to_vec();
            let codes = bytes(section(rows * dims, 1)?)?;
            Some(Arc::new(Sq8::from_parts(dims, lo, step, codes)))
        }
        _ => return Err(bad("unknown codes flag")),
    };
    let graph = HnswGraph {
        shape,
        level0: u32s(l0)?,
        levels,
        upper_offsets: u32s(uo)?,
        upper: u32s(up)?,
        codes,
    };
    validate(&graph, &map, l0.0).map_err(|e| bad(&format!("graph: {e}")))?;
    Ok(ColumnFile {
        vectors,
        graph: Some((metric, graph)),
    })
}
