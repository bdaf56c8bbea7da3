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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use super::Shard;
use super::manifest::{Manifest, tombstone_file};
use super::state::{State, segment_dir, segments_dir};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;

const MAGIC: &[u8; 8] = b"VCRFTSNP";
const VERSION: u32 = 1;
const KIND_FILE: u8 = 1;
const KIND_MANIFEST: u8 = 2;
const MAX_NAME_BYTES: usize = 256;
const COPY_CHUNK_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The log index the snapshot reflects: replay the log after it.
    pub applied_index: u64,
    pub files: usize,
    pub size_bytes: u64,
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
        let io = |e| Error::io("write snapshot", &inner.dir, e);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        let mut info = SnapshotInfo {
            applied_index: manifest.durable_index,
            files: 0,
            size_bytes: 0,
        };
        for seg in &manifest.segments {
            let mut names = segment_files(&inner.dir, seg.id)?;
            if seg.tombstone_version != 0 {
                names.push(tombstone_file(seg.tombstone_version));
            }
            for name in names {
                let path = segment_dir(&inner.dir, seg.id).join(&name);
                let size = stream_file(out, &format!("seg-{:012}/{name}", seg.id), &path)?;
                info.files += 1;
                info.size_bytes += size;
            }
        }
        let bytes = manifest.encode();
        out.write_all(&[KIND_MANIFEST]).map_err(io)?;
        out.write_all(&(bytes.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&bytes).map_err(io)?;
        out.write_all(&crc32c::crc32c(&bytes).to_le_bytes())
            .map_err(io)?;
        out.flush().map_err(io)?;
        Ok(info)
    }

    /// Reads a whole snapshot without installing it: every file's name and checksum, the
    /// manifest (its checksum, schema and segments), each segment's files present, nothing
    /// after the manifest. What a node checks before it lets Raft adopt a snapshot someone
    /// sent it: a snapshot that fails here would stop the replica if installed.
    pub fn verify_snapshot(bytes: &[u8]) -> Result<SnapshotContents> {
        let mut input = bytes;
        let mut reader = SnapshotReader {
            input: &mut input,
            dir: Path::new("snapshot"),
        };
        reader.header()?;
        let mut files: HashMap<u64, Vec<String>> = HashMap::new();
        let manifest = loop {
            match reader.u8()? {
                KIND_FILE => {
                    let (id, name) = reader.file_name()?;
                    reader.copy_body(&mut std::io::sink(), Path::new(&name))?;
                    files.entry(id).or_default().push(name);
                }
                KIND_MANIFEST => break reader.manifest()?,
                _ => return Err(reader.bad("unknown entry kind")),
            }
        };
        let mut more = [0u8; 1];
        if reader.input.read(&mut more).unwrap_or(0) != 0 {
            return Err(reader.bad("bytes after the manifest"));
        }
        for seg in &manifest.segments {
            let names = files
                .get(&seg.id)
                .ok_or_else(|| reader.bad("segment without files"))?;
            let tombstones =
                (seg.tombstone_version != 0).then(|| tombstone_file(seg.tombstone_version));
            let needed = ["meta.json".to_string(), "payload.arrow".to_string()];
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
        for seg in &mut manifest.segments {
            let new_id = *ids
                .get(&seg.id)
                .ok_or_else(|| reader.bad("segment without files"))?;
            let tmp = segment_dir(&inner.dir, new_id).with_extension("tmp");
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
        if name.starts_with("vec-") && name.ends_with(".bin") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn stream_file(out: &mut dyn Write, name: &str, path: &Path) -> Result<u64> {
    let mut file = File::open(path).ctx("open", path)?;
    let size = file.metadata().ctx("stat", path)?.len();
    let io = |e| Error::io("write snapshot", path, e);
    out.write_all(&[KIND_FILE]).map_err(io)?;
    out.write_all(&(name.len() as u16).to_le_bytes())
        .map_err(io)?;
    out.write_all(name.as_bytes()).map_err(io)?;
    out.write_all(&size.to_le_bytes()).map_err(io)?;
    let mut crc = 0u32;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        file.read_exact(&mut buf[..n]).ctx("read", path)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        out.write_all(&buf[..n]).map_err(io)?;
        left -= n as u64;
    }
    out.write_all(&crc.to_le_bytes()).map_err(io)?;
    Ok(size)
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
        Manifest::decode(&bytes).map_err(|d| self.bad(&d))
    }
}
