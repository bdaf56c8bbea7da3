//! Sealed segments: immutable directories written once from a frozen growing segment (or by
//! compaction) and then only read.
//!
//! ```text
//! seg-<id>/meta.json      row count, rows with NULL vectors per vector column
//! seg-<id>/payload.arrow  every non-vector column, Arrow IPC file
//! seg-<id>/vec-<i>.bin    i-th vector column: vectors, norms, HNSW graph, SQ8 codes
//!                         (index/file.rs)
//! seg-<id>/versions.bin   each row's version (`Segment::versions`), u64 little-endian
//! ```
//! A segment is written under `seg-<id>.tmp` and renamed into place, so a crash never leaves a
//! half-written `seg-<id>`. Tombstones are not part of it: the shard keeps them beside it
//! (`tomb-<generation>.roar`), because they change. A replaced segment (compaction, truncate,
//! snapshot install) is deleted by the shard only after a manifest without it is durable
//! (`Manifest::remove_unreferenced`); readers still holding it keep their mmap, which outlives
//! the unlink.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;
use crate::index::VectorIndex;
use crate::index::build::{BuildOptions, build_graph_with, indexable_rows};
use crate::index::file::{self, ColumnFile};
use crate::index::sq8::{self, Sq8};
use crate::index::vectors::{Backing, VectorStore, VectorsRef};
use crate::schema::{CollectionSchema, ColumnType};
use crate::segment::Segment;

/// Segments smaller than this are searched by brute force; a graph would not pay for itself.
pub const MIN_ROWS_FOR_GRAPH: usize = 256;

/// The file of a segment's row versions (`Segment::versions`).
pub const VERSIONS_FILE: &str = "versions.bin";

#[derive(Serialize, Deserialize)]
struct Meta {
    rows: u32,
    null_vectors: Vec<Vec<u32>>,
    /// Whether `versions.bin` holds the rows' versions; without it every row's version is 0
    /// (segments sealed before versions were kept, and restored ones: `forget_versions`).
    #[serde(default)]
    versions: bool,
}

pub struct SealedSegment {
    dir: PathBuf,
    rows: u32,
    payload: Vec<RecordBatch>,
    columns: Vec<ColumnFile>,
    nulls: Vec<RoaringBitmap>,
    versions: Vec<u64>,
}

impl SealedSegment {
    /// Writes `source` as a sealed segment at `dir`, leaving the rows in `dead` out of the
    /// graphs (they stay in the files, so row numbers are unchanged), building them as `build`
    /// says (how many threads), and opens it.
    pub fn write(
        dir: &Path,
        schema: &CollectionSchema,
        source: &dyn Segment,
        dead: &RoaringBitmap,
        build: BuildOptions,
    ) -> Result<SealedSegment> {
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).ctx("remove stale", &tmp)?;
        }
        fs::create_dir_all(&tmp).ctx("create dir", &tmp)?;
        write_payload(&tmp.join("payload.arrow"), schema, source)?;
        let mut null_vectors = Vec::new();
        for (i, &col) in schema.vector_columns().iter().enumerate() {
            let ColumnType::Vector(spec) = schema.columns[col].ty else {
                unreachable!("vector_columns returns vector columns")
            };
            let nulls = source.null_vectors(i);
            let indexed = schema.is_indexed(&schema.columns[col].name);
            let column = build_column(source.vectors(i), nulls, dead, spec, indexed, build)?;
            file::write(&tmp.join(format!("vec-{i}.bin")), &column)?;
            null_vectors.push(nulls.iter().collect());
        }
        write_versions(&tmp.join(VERSIONS_FILE), source.versions())?;
        let meta = Meta {
            rows: source.num_rows(),
            null_vectors,
            versions: true,
        };
        write_meta(&tmp, &meta)?;
        sync_dir(&tmp)?;
        if dir.exists() {
            fs::remove_dir_all(dir).ctx("remove stale", dir)?;
        }
        fs::rename(&tmp, dir).ctx("rename", dir)?;
        sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
        SealedSegment::open(dir, schema)
    }

    /// Turns the versions of the segment at `dir` into 0s: for segments restored into a new
    /// log, where the indices they name mean nothing (and a later write could reuse one).
    pub fn forget_versions(dir: &Path) -> Result<()> {
        let mut meta = read_meta(dir)?;
        if !meta.versions {
            return Ok(());
        }
        meta.versions = false;
        write_meta(dir, &meta)?;
        let path = dir.join(VERSIONS_FILE);
        fs::remove_file(&path).ctx("remove", &path)
    }

    /// The files a segment whose `meta.json` holds `meta` must have (`meta.json` included):
    /// what a snapshot received from another node is checked for before it is installed.
    pub fn required_files(meta: &[u8]) -> std::result::Result<Vec<String>, String> {
        let meta: Meta = serde_json::from_slice(meta).map_err(|e| e.to_string())?;
        let mut names = vec!["meta.json".to_string(), "payload.arrow".to_string()];
        names.extend((0..meta.null_vectors.len()).map(|i| format!("vec-{i}.bin")));
        if meta.versions {
            names.push(VERSIONS_FILE.to_string());
        }
        Ok(names)
    }

    /// Opens and verifies the segment at `dir`.
    pub fn open(dir: &Path, schema: &CollectionSchema) -> Result<SealedSegment> {
        let meta_path = dir.join("meta.json");
        let meta = read_meta(dir)?;
        let payload = read_payload(&dir.join("payload.arrow"))?;
        let want = schema.payload_schema();
        let same = |b: &RecordBatch| {
            let got = b.schema();
            got.fields().len() == want.fields().len()
                && got
                    .fields()
                    .iter()
                    .zip(want.fields())
                    .all(|(g, w)| g.name() == w.name() && g.data_type() == w.data_type())
        };
        if !payload.iter().all(same) {
            return Err(Error::corrupt(
                dir,
                "payload columns disagree with the schema",
            ));
        }
        let payload_rows: usize = payload.iter().map(|b| b.num_rows()).sum();
        if payload_rows != meta.rows as usize {
            return Err(Error::corrupt(
                dir,
                "payload row count disagrees with meta.json",
            ));
        }
        let vector_columns = schema.vector_columns();
        if meta.null_vectors.len() != vector_columns.len() {
            return Err(Error::corrupt(
                dir,
                "vector column count disagrees with the schema",
            ));
        }
        let mut columns = Vec::new();
        for (i, &col) in vector_columns.iter().enumerate() {
            let path = dir.join(format!("vec-{i}.bin"));
            let column = file::open(&path)?;
            if column.vectors.len() != meta.rows as usize {
                return Err(Error::corrupt(&path, "row count disagrees with meta.json"));
            }
            let ColumnType::Vector(spec) = schema.columns[col].ty else {
                unreachable!("vector_columns returns vector columns")
            };
            if column.vectors.dims() != spec.dims {
                return Err(Error::corrupt(&path, "dimensions disagree with the schema"));
            }
            if meta.null_vectors[i].iter().any(|&r| r >= meta.rows) {
                return Err(Error::corrupt(&meta_path, "NULL vector row out of range"));
            }
            columns.push(with_codes(column));
        }
        let versions = match meta.versions {
            true => read_versions(&dir.join(VERSIONS_FILE), meta.rows)?,
            false => vec![0; meta.rows as usize],
        };
        Ok(SealedSegment {
            versions,
            dir: dir.to_path_buf(),
            rows: meta.rows,
            payload,
            columns,
            nulls: meta
                .null_vectors
                .iter()
                .map(|v| v.iter().copied().collect())
                .collect(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_bytes(&self) -> usize {
        let columns: usize = self
            .columns
            .iter()
            .map(|c| c.vectors.size_bytes() + c.graph.as_ref().map_or(0, |(_, g)| g.size_bytes()))
            .sum();
        columns
            + self
                .payload
                .iter()
                .map(|b| b.get_array_memory_size())
                .sum::<usize>()
    }
}

impl Segment for SealedSegment {
    fn num_rows(&self) -> u32 {
        self.rows
    }

    fn payload(&self) -> &[RecordBatch] {
        &self.payload
    }

    fn vectors(&self, i: usize) -> VectorsRef<'_> {
        self.columns[i].vectors.view()
    }

    fn null_vectors(&self, i: usize) -> &RoaringBitmap {
        &self.nulls[i]
    }

    fn versions(&self) -> &[u64] {
        &self.versions
    }

    fn index(&self, i: usize) -> Option<(Metric, &dyn VectorIndex)> {
        self.columns[i]
            .graph
            .as_ref()
            .map(|(m, g)| (*m, g as &dyn VectorIndex))
    }
}

/// Gives a column's graph the SQ8 codes its walk scores (`index/sq8.rs`), from
/// `sq8::MIN_DIMS` dimensions up, unless it has them: a build makes them, and a file written
/// since codes are stored holds them.
fn with_codes(mut column: ColumnFile) -> ColumnFile {
    let dims = column.vectors.dims();
    if let Some((_, graph)) = &mut column.graph
        && graph.codes.is_none()
        && dims >= sq8::MIN_DIMS
    {
        graph.codes = Some(Arc::new(Sq8::encode(&column.vectors.view())));
    }
    column
}

fn build_column(
    source: VectorsRef<'_>,
    nulls: &RoaringBitmap,
    dead: &RoaringBitmap,
    spec: crate::schema::VectorSpec,
    indexed: bool,
    build: BuildOptions,
) -> Result<ColumnFile> {
    let metric = spec.metric;
    let vectors = VectorStore::from_parts(
        source.dims,
        Backing::owned(source.data.to_vec()),
        Backing::owned(source.inv_norms.to_vec()),
    );
    let rows = indexable_rows(&vectors, metric, &|r| nulls.contains(r) || dead.contains(r));
    let graph = if indexed && rows.len() >= MIN_ROWS_FOR_GRAPH {
        Some((
            metric,
            build_graph_with(&vectors, &rows, metric, spec.hnsw, build)?,
        ))
    } else {
        None
    };
    Ok(with_codes(ColumnFile { vectors, graph }))
}

fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join("meta.json");
    serde_json::from_slice(&fs::read(&path).ctx("read", &path)?)
        .map_err(|e| Error::corrupt(&path, e.to_string()))
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let bytes = serde_json::to_vec(meta).expect("meta serialises");
    crate::fsutil::write_atomic(&dir.join("meta.json"), &bytes)
}

fn write_versions(path: &Path, versions: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = versions.iter().flat_map(|v| v.to_le_bytes()).collect();
    crate::fsutil::write_atomic(path, &bytes)
}

fn read_versions(path: &Path, rows: u32) -> Result<Vec<u64>> {
    let bytes = fs::read(path).ctx("read", path)?;
    if bytes.len() != rows as usize * 8 {
        return Err(Error::corrupt(path, "row count disagrees with meta.json"));
    }
    let words = bytes.chunks_exact(8);
    Ok(words
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect())
}

fn write_payload(path: &Path, schema: &CollectionSchema, source: &dyn Segment) -> Result<()> {
    let file = File::create(path).ctx("create", path)?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &schema.payload_schema())?;
    for batch in source.payload() {
        writer.write(batch)?;
    }
    writer.finish()?;
    let file = writer
        .into_inner()?
        .into_inner()
        .map_err(|e| Error::io("flush", path, e.into_error()))?;
    file.sync_all().ctx("fsync", path)
}

fn read_payload(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).ctx("open", path)?;
    let reader =
        FileReader::try_new(file, None).map_err(|e| Error::corrupt(path, e.to_string()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::corrupt(path, e.to_string()))?;
    // One batch per segment keeps row lookups trivial.
    Ok(vec![arrow::compute::concat_batches(&schema, &batches)?])
}
