//! Shard snapshots: a consistent point-in-time copy of the persisted state as one byte stream,
//! and installing such a stream on another (possibly empty) replica.
//!
//! Making one seals the growing segment and persists, so the manifest alone describes the
//! shard at `applied_index`; then the manifest and every file it names are streamed while
//! `maintenance` is held (nothing can delete them meanwhile; writes go on in memory).
//!
//! ```text
//! "VCRFTSNP" version:u32
//! { kind=1:u8 name_len:u16 name size:u64 bytes crc32c:u32 }*   segment files "seg-<id>/<file>"
//! kind=2:u8 size:u64 manifest crc32c:u32                      last
//! ```
//! Installing writes the segment files under fresh ids (`.tmp` directories renamed into place),
//! then replaces `MANIFEST` atomically, then swaps the in-memory state. A crash before the
//! manifest rename leaves the old state intact (the new directories are unreferenced and removed
//! on open); after it, the new one.
//!
//! Backups take the stream apart file by file ([`split_snapshot`]) and put it together again
//! ([`SnapshotWriter`]) from the files they stored; a restored shard starts a new log
//! ([`Shard::restore_snapshot`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use super::Shard;
use super::manifest::{Manifest, tombstone_file};
use super::state::{State, segment_dir, segments_dir};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;
use crate::segment::Segment;
use crate::segment::sealed::{SealedSegment, VERSIONS_FILE};

const MAGIC: &[u8; 8] = b"VCRFTSNP";
const VERSION: u32 = 1;
const KIND_FILE: u8 = 1;
const KIND_MANIFEST: u8 = 2;
const MAX_NAME_BYTES: usize = 256;
const COPY_CHUNK_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// The log index the snapshot reflects: replay the log after it.
    pub applied_index: u64,
    pub files: usize,
    pub size_bytes: u64,
    /// Live rows in the snapshot (as the shard counted them when it was taken).
    pub rows: u64,
}

/// What a snapshot holds, as [`Shard::verify_snapshot`] read it.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotContents {
    pub schema: crate::schema::CollectionSchema,
    /// The log index the snapshot's data reaches.
    pub durable_index: u64,
    pub segments: usize,
}

impl Shard {
    /// Streams a snapshot of the shard into `out`.
    pub fn write_snapshot(&self, out: &mut dyn Write) -> Result<SnapshotInfo> {
        let inner = &self.inner;
        let _guard = inner.maintenance.lock();
        inner.flush_locked()?;
        let manifest = Manifest::load(&inner.dir)?
            .ok_or_else(|| Error::corrupt(&inner.dir, "manifest vanished"))?;
        let rows = {
            // Every live row is sealed now but those written since the flush.
            let state = inner.state.read();
            let growing = u64::from(state.growing.num_rows()) - state.growing_dead.len();
            (state.keymap.len() as u64).saturating_sub(growing)
        };
        let mut writer = SnapshotWriter::start(out)?;
        let mut info = SnapshotInfo {
            applied_index: manifest.durable_index,
            files: 0,
            size_bytes: 0,
            rows,
        };
        for seg in &manifest.segments {
            let mut names = segment_files(&inner.dir, seg.id)?;
            if seg.tombstone_version != 0 {
                names.push(tombstone_file(seg.tombstone_version));
            }
            for name in names {
                let path = segment_dir(&inner.dir, seg.id).join(&name);
                let mut file = File::open(&path).ctx("open", &path)?;
                let size = file.metadata().ctx("stat", &path)?.len();
                writer.file(&format!("seg-{:012}/{name}", seg.id), size, &mut file)?;
                info.files += 1;
                info.size_bytes += size;
            }
        }
        writer.finish(&manifest.encode())?;
        Ok(info)
    }

    /// Reads a whole snapshot without installing it: every file's name and checksum, the
    /// manifest (its checksum, schema and segments), each segment's files present, nothing
    /// after the manifest. What a node checks before it lets Raft adopt a snapshot someone
    /// sent it: a snapshot that fails here would stop the replica if installed.
    pub fn verify_snapshot(input: &mut dyn Read) -> Result<SnapshotContents> {
        let mut reader = SnapshotReader {
            input,
            dir: Path::new("snapshot"),
        };
        reader.header()?;
        let mut files: HashMap<u64, Vec<String>> = HashMap::new();
        let mut metas: HashMap<u64, Vec<u8>> = HashMap::new();
        let manifest = loop {
            match reader.u8()? {
                KIND_FILE => {
                    let (id, name) = reader.file_name()?;
                    if name == "meta.json" {
                        let mut meta = SmallFile(Vec::new());
                        reader.copy_body(&mut meta, Path::new(&name))?;
                        metas.insert(id, meta.0);
                    } else {
                        reader.copy_body(&mut std::io::sink(), Path::new(&name))?;
                    }
                    files.entry(id).or_default().push(name);
                }
                KIND_MANIFEST => break reader.manifest()?,
                _ => return Err(reader.bad("unknown entry kind")),
            }
        };
        let mut more = [0u8; 1];
        // The input's end is part of the snapshot: a stream cut short or gone wrong fails here.
        if reader
            .input
            .read(&mut more)
            .map_err(|e| reader.bad(&e.to_string()))?
            != 0
        {
            return Err(reader.bad("bytes after the manifest"));
        }
        for seg in &manifest.segments {
            let names = files
                .get(&seg.id)
                .ok_or_else(|| reader.bad("segment without files"))?;
            let tombstones =
                (seg.tombstone_version != 0).then(|| tombstone_file(seg.tombstone_version));
            let meta = metas
                .get(&seg.id)
                .ok_or_else(|| reader.bad(&format!("segment {} lacks meta.json", seg.id)))?;
            let needed = SealedSegment::required_files(meta)
                .map_err(|e| reader.bad(&format!("segment {}: meta.json: {e}", seg.id)))?;
            for needed in needed.iter().chain(tombstones.as_ref()) {
                if !names.contains(needed) {
                    return Err(reader.bad(&format!("segment {} lacks {needed}", seg.id)));
                }
            }
        }
        Ok(SnapshotContents {
            schema: manifest.schema,
            durable_index: manifest.durable_index,
            segments: manifest.segments.len(),
        })
    }

    /// Replaces this shard's whole state with the snapshot in `input`, atomically. The caller
    /// serialises installs with `apply` (Raft's state machine does): an apply racing an install
    /// may land in the state being replaced.
    pub fn install_snapshot(&self, input: &mut dyn Read) -> Result<SnapshotInfo> {
        self.install(input, false)
    }

    /// Installs the snapshot in `input` as the start of a new log (a restore from a backup):
    /// its durable index becomes 0 and the transactions it held prepared are dropped (their
    /// outcome belongs to the log it came from). The shard's own log must hold no command.
    pub fn restore_snapshot(&self, input: &mut dyn Read) -> Result<SnapshotInfo> {
        debug_assert_eq!(self.applied_index(), 0, "a restore starts a new log");
        self.install(input, true)
    }

    fn install(&self, input: &mut dyn Read, new_log: bool) -> Result<SnapshotInfo> {
        let inner = &self.inner;
        let _guard = inner.maintenance.lock();
        let mut reader = SnapshotReader {
            input,
            dir: &inner.dir,
        };
        reader.header()?;
        let mut ids: HashMap<u64, u64> = HashMap::new();
        let mut info = SnapshotInfo {
            applied_index: 0,
            files: 0,
            size_bytes: 0,
            rows: 0,
        };
        let manifest = loop {
            match reader.u8()? {
                KIND_FILE => {
                    let (old_id, name) = reader.file_name()?;
                    let new_id = *ids.entry(old_id).or_insert_with(|| {
                        let mut state = inner.state.write();
                        state.next_segment_id += 1;
                        state.next_segment_id - 1
                    });
                    let dir = segment_dir(&inner.dir, new_id).with_extension("tmp");
                    fs::create_dir_all(&dir).ctx("create dir", &dir)?;
                    info.size_bytes += reader.file_body(&dir.join(name))?;
                    info.files += 1;
                }
                KIND_MANIFEST => break reader.manifest()?,
                _ => return Err(reader.bad("unknown entry kind")),
            }
        };
        let mut manifest = manifest;
        if new_log {
            manifest.durable_index = 0;
            manifest.txns.clear();
        }
        for seg in &mut manifest.segments {
            let new_id = *ids
                .get(&seg.id)
                .ok_or_else(|| reader.bad("segment without files"))?;
            let tmp = segment_dir(&inner.dir, new_id).with_extension("tmp");
            if new_log {
                SealedSegment::forget_versions(&tmp)?;
            }
            sync_dir(&tmp)?;
            fs::rename(&tmp, segment_dir(&inner.dir, new_id)).ctx("rename", &tmp)?;
            seg.id = new_id;
        }
        sync_dir(&segments_dir(&inner.dir))?;
        manifest.next_segment_id = manifest
            .next_segment_id
            .max(inner.state.read().next_segment_id + 1);
        info.applied_index = manifest.durable_index;
        let fresh = State::from_manifest(&inner.dir, &manifest)?;
        manifest.store(&inner.dir)?;
        let old = std::mem::replace(&mut *inner.state.write(), fresh);
        drop(old);
        info.rows = inner.state.read().keymap.len() as u64;
        manifest.remove_unreferenced(&inner.dir)?;
        Ok(info)
    }
}

fn segment_files(dir: &Path, id: u64) -> Result<Vec<String>> {
    let seg_dir = segment_dir(dir, id);
    let mut names = vec!["meta.json".to_string(), "payload.arrow".to_string()];
    for entry in fs::read_dir(&seg_dir).ctx("list", &seg_dir)? {
        let name = entry
            .ctx("list", &seg_dir)?
            .file_name()
            .to_string_lossy()
            .to_string();
        if (name.starts_with("vec-") && name.ends_with(".bin")) || name == VERSIONS_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The largest `meta.json` a snapshot may carry (it lists the rows with NULL vectors).
const MAX_META_BYTES: usize = 64 << 20;

/// Collects a segment's `meta.json` while a snapshot is verified; refuses one past
/// `MAX_META_BYTES` instead of holding whatever size a stream claims.
struct SmallFile(Vec<u8>);

impl Write for SmallFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_META_BYTES {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "meta.json too large");
            return Err(e);
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a snapshot stream: the header, then each file, then the manifest.
pub struct SnapshotWriter<'a> {
    out: &'a mut dyn Write,
    buf: Vec<u8>,
}

impl<'a> SnapshotWriter<'a> {
    pub fn start(out: &'a mut dyn Write) -> Result<SnapshotWriter<'a>> {
        let mut writer = SnapshotWriter {
            out,
            buf: vec![0u8; COPY_CHUNK_BYTES],
        };
        writer.put(MAGIC)?;
        writer.put(&VERSION.to_le_bytes())?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write snapshot", Path::new("snapshot"), e))
    }

    /// A file `name` ("seg-<id>/<file>") of `size_bytes`, read from `body`.
    pub fn file(&mut self, name: &str, size_bytes: u64, body: &mut dyn Read) -> Result<()> {
        assert!(
            name.len() <= MAX_NAME_BYTES,
            "a snapshot file name is short"
        );
        self.put(&[KIND_FILE])?;
        self.put(&(name.len() as u16).to_le_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&size_bytes.to_le_bytes())?;
        let mut crc = 0u32;
        let mut left = size_bytes;
        let mut buf = std::mem::take(&mut self.buf);
        while left > 0 {
            let n = (left as usize).min(buf.len());
            body.read_exact(&mut buf[..n])
                .map_err(|e| Error::io("read snapshot file", Path::new(name), e))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        self.buf = buf;
        self.put(&crc.to_le_bytes())
    }

    /// The manifest, last; flushes the stream.
    pub fn finish(mut self, manifest: &[u8]) -> Result<()> {
        self.put(&[KIND_MANIFEST])?;
        self.put(&(manifest.len() as u64).to_le_bytes())?;
        self.put(manifest)?;
        self.put(&crc32c::crc32c(manifest).to_le_bytes())?;
        self.out
            .flush()
            .map_err(|e| Error::io("write snapshot", Path::new("snapshot"), e))
    }
}

/// Takes a snapshot stream apart: hands each file's name, size and body to `file` (which may
/// read the body or not: what it leaves is skipped), checks every checksum, and returns the
/// manifest's bytes (checked to decode).
pub fn split_snapshot(
    input: &mut dyn Read,
    file: &mut dyn FnMut(&str, u64, &mut dyn Read) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut reader = SnapshotReader {
        input,
        dir: Path::new("snapshot"),
    };
    reader.header()?;
    loop {
        match reader.u8()? {
            KIND_FILE => {
                let (id, name) = reader.file_name()?;
                let name = format!("seg-{id:012}/{name}");
                let size = reader.u64()?;
                let mut body = CrcReader {
                    input: (&mut *reader.input).take(size),
                    crc: 0,
                };
                file(&name, size, &mut body)?;
                std::io::copy(&mut body, &mut std::io::sink())
                    .map_err(|e| Error::io("read snapshot", Path::new(&name), e))?;
                if body.input.limit() != 0 {
                    return Err(reader.bad("stream ends inside a file"));
                }
                let crc = body.crc;
                let mut want = [0u8; 4];
                reader.exact(&mut want)?;
                if crc.to_le_bytes() != want {
                    return Err(reader.bad("file checksum mismatch"));
                }
            }
            KIND_MANIFEST => {
                let bytes = reader.manifest_bytes()?;
                Manifest::decode(&bytes).map_err(|d| reader.bad(&d))?;
                return Ok(bytes);
            }
            _ => return Err(reader.bad("unknown entry kind")),
        }
    }
}

/// A reader that sums the CRC-32C of what passes through it.
struct CrcReader<R> {
    input: R,
    crc: u32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}

struct SnapshotReader<'a> {
    input: &'a mut dyn Read,
    dir: &'a Path,
}

impl SnapshotReader<'_> {
    fn bad(&self, detail: &str) -> Error {
        Error::corrupt(self.dir, format!("snapshot stream: {detail}"))
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input
            .read_exact(buf)
            .map_err(|e| Error::io("read snapshot", self.dir, e))
    }

    fn u8(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn header(&mut self) -> Result<()> {
        let mut magic = [0u8; 12];
        self.exact(&mut magic)?;
        if &magic[..8] != MAGIC || magic[8..] != VERSION.to_le_bytes() {
            return Err(self.bad("not a Vecraft shard snapshot"));
        }
        Ok(())
    }

    /// Reads "seg-<id>/<file>", refusing anything that could escape the segment directory.
    fn file_name(&mut self) -> Result<(u64, String)> {
        let mut len = [0u8; 2];
        self.exact(&mut len)?;
        let len = u16::from_le_bytes(len) as usize;
        if len > MAX_NAME_BYTES {
            return Err(self.bad("file name too long"));
        }
        let mut name = vec![0u8; len];
        self.exact(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| self.bad("file name not UTF-8"))?;
        let parsed = name.split_once('/').and_then(|(seg, file)| {
            let id = seg.strip_prefix("seg-")?.parse::<u64>().ok()?;
            let safe = !file.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && !file.starts_with('.');
            safe.then(|| (id, file.to_string()))
        });
        parsed.ok_or_else(|| self.bad("bad file name"))
    }

    fn file_body(&mut self, path: &Path) -> Result<u64> {
        let mut file = File::create(path).ctx("create", path)?;
        let size = self.copy_body(&mut file, path)?;
        file.sync_all().ctx("fsync", path)?;
        Ok(size)
    }

    /// Copies a file entry's body to `out`, checking its CRC; its size.
    fn copy_body(&mut self, out: &mut dyn Write, path: &Path) -> Result<u64> {
        let size = self.u64()?;
        let mut crc = 0u32;
        let mut buf = vec![0u8; COPY_CHUNK_BYTES];
        let mut left = size;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            self.exact(&mut buf[..n])?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            out.write_all(&buf[..n]).ctx("write", path)?;
            left -= n as u64;
        }
        let mut want = [0u8; 4];
        self.exact(&mut want)?;
        if crc.to_le_bytes() != want {
            return Err(self.bad("file checksum mismatch"));
        }
        Ok(size)
    }

    fn manifest(&mut self) -> Result<Manifest> {
        let bytes = self.manifest_bytes()?;
        Manifest::decode(&bytes).map_err(|d| self.bad(&d))
    }

    /// The manifest entry's bytes, their checksum checked.
    fn manifest_bytes(&mut self) -> Result<Vec<u8>> {
        let size = self.u64()?;
        if size > 64 << 20 {
            return Err(self.bad("manifest too large"));
        }
        let mut bytes = vec![0u8; size as usize];
        self.exact(&mut bytes)?;
        let mut want = [0u8; 4];
        self.exact(&mut want)?;
        if crc32c::crc32c(&bytes).to_le_bytes() != want {
            return Err(self.bad("manifest checksum mismatch"));
        }
        Ok(bytes)
    }
}
