//! Where backups are kept: an object store named by a URL (`file:///dir`, `s3://bucket/prefix`),
//! through the `object_store` crate, and the layout of a backup in it.
//!
//! ```text
//! <prefix>/blobs/<sha256>                          a file of a shard snapshot, named by its content
//! <prefix>/backups/<id>/manifest-<sha256>.json     a backup: written last, named by its checksum
//! <prefix>/backups/<id>/started                    a backup in flight (removed once complete)
//! <prefix>/sweeps/<id>                             a retention sweep deleting blobs (`retention.rs`)
//! ```
//! A blob is written once and never changed, so a later backup uploads only the files that are
//! new. A backup exists once its manifest does; an interrupted one left at most blobs that no
//! manifest names, which nothing reads (and retention deletes). Every object is checked against
//! its name when read.
//!
//! The calls block: they run the store's futures on the runtime `handle` names, and must be made
//! from a thread that may block (never a runtime worker).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use vecraft_storage::{Error, Result};

/// Objects up to this size go in one request; larger ones in parts of this size.
const PART_BYTES: usize = 16 << 20;
/// Parts of one object in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Settings of an S3-compatible store beside its URL: `object_store`'s keys (`aws_endpoint`,
/// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, …). The
/// standard `AWS_*` environment variables are read first; these override them.
pub type StoreOptions = Vec<(String, String)>;

pub struct BackupStore {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    handle: Handle,
}

/// The manifests among `objects` (listed under `backups/`), oldest first (ids sort by time).
pub(super) fn manifests_in(objects: &[Listed]) -> Vec<ManifestObject> {
    let mut found: Vec<ManifestObject> = objects
        .iter()
        .filter_map(|object| {
            let [id, name] = object.below.as_slice() else {
                return None;
            };
            Some(ManifestObject {
                id: id.clone(),
                location: object.location.clone(),
                sha256: manifest_sha(name)?.to_string(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// The checksum a manifest's object name carries (`manifest-<sha256>.json`), if it is one.
fn manifest_sha(name: &str) -> Option<&str> {
    name.strip_prefix("manifest-")?.strip_suffix(".json")
}

/// An object found by [`BackupStore::list`].
pub(super) struct Listed {
    /// Its path below the listed folder, part by part.
    pub below: Vec<String>,
    pub size_bytes: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
    pub location: StorePath,
}

/// A manifest found in the store: its backup id and object.
#[derive(Clone, Debug)]
pub struct ManifestObject {
    pub id: String,
    location: StorePath,
    sha256: String,
}

impl BackupStore {
    /// The store `url` names. Refuses (InvalidArgument) a URL that does not parse or whose
    /// scheme is neither `file` nor `s3`; a store that cannot be reached fails at first use.
    pub fn open(url: &str, options: &StoreOptions, handle: Handle) -> Result<BackupStore> {
        let bad =
            |why: String| Error::InvalidArgument(format!("invalid backup URL \"{url}\": {why}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let (store, prefix): (Arc<dyn ObjectStore>, StorePath) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| store_error("open", url, e))?;
                (Arc::new(local), StorePath::default())
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(bad("no bucket".into()));
                }
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: std::time::Duration::from_secs(10),
                        ..Default::default()
                    });
                for (key, value) in options {
                    let key = key
                        .parse()
                        .map_err(|_| bad(format!("unknown store option \"{key}\"")))?;
                    builder = builder.with_config(key, value);
                }
                let endpoint = builder
                    .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
                    .unwrap_or_default();
                if endpoint.starts_with("http://") {
                    builder = builder.with_allow_http(true);
                }
                let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
                let prefix = StorePath::parse(parsed.path().trim_matches('/'))
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(s3), prefix)
            }
            other => {
                return Err(bad(format!(
                    "unsupported scheme \"{other}\" (use file:// or s3://)"
                )));
            }
        };
        Ok(BackupStore {
            url: url.to_string(),
            store,
            prefix,
            handle,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, parts: &[&str]) -> StorePath {
        parts
            .iter()
            .fold(self.prefix.clone(), |path, part| path.join(*part))
    }

    fn blob_path(&self, sha256: &str) -> StorePath {
        self.path(&["blobs", sha256])
    }

    /// The store `url` names, made if it is a local directory that does not exist yet (where a
    /// backup goes; [`BackupStore::open`] refuses a missing one).
    pub fn create(url: &str, options: &StoreOptions, handle: Handle) -> Result<BackupStore> {
        if let Ok(parsed) = url::Url::parse(url)
            && parsed.scheme() == "file"
            && let Ok(dir) = parsed.to_file_path()
        {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io("create backup directory", &dir, e))?;
        }
        BackupStore::open(url, options, handle)
    }

    /// Whether the blob `sha256` is stored.
    pub fn has_blob(&self, sha256: &str) -> Result<bool> {
        let location = self.blob_path(sha256);
        match self.handle.block_on(self.store.head(&location)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error("look up", location.as_ref(), e)),
        }
    }

    /// Stores the file at `path` as the blob `sha256` (its content's hash).
    pub fn put_blob(&self, sha256: &str, path: &std::path::Path) -> Result<()> {
        let location = self.blob_path(sha256);
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let fail = |e| store_error("upload", location.as_ref(), e);
        if size as usize <= PART_BYTES {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", path, e))?;
            let put = self.store.put(&location, PutPayload::from(bytes));
            self.handle.block_on(put).map_err(fail)?;
            return Ok(());
        }
        let upload = self
            .handle
            .block_on(self.store.put_multipart(&location))
            .map_err(fail)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = read_full(&mut file, &mut buf).map_err(|e| Error::io("read", path, e))?;
            if n == 0 {
                break;
            }
            let waited = self
                .handle
                .block_on(writer.wait_for_capacity(PARTS_IN_FLIGHT));
            if let Err(e) = waited {
                let _ = self.handle.block_on(writer.abort());
                return Err(fail(e));
            }
            writer.write(&buf[..n]);
        }
        self.handle.block_on(writer.finish()).map_err(fail)?;
        Ok(())
    }

    /// A reader of the blob `sha256` that fails (InvalidData) at its end if the bytes read do
    /// not hash to its name, or if there are not `size_bytes` of them. A caller that reads
    /// exactly `size_bytes` calls [`BlobReader::verify`] to reach that end.
    pub fn blob_reader(&self, sha256: &str, size_bytes: u64) -> Result<BlobReader<'_>> {
        let location = self.blob_path(sha256);
        let got = self
            .handle
            .block_on(self.store.get(&location))
            .map_err(|e| store_error("read", location.as_ref(), e))?;
        Ok(BlobReader {
            handle: &self.handle,
            stream: got.into_stream(),
            chunk: Bytes::new(),
            hasher: Sha256::new(),
            want: sha256.to_string(),
            left: size_bytes,
            location: location.to_string(),
        })
    }

    /// Stores a backup's manifest, last: the backup exists from now on.
    pub fn put_manifest(&self, id: &str, body: &[u8]) -> Result<()> {
        let name = format!("manifest-{}.json", sha256_hex(body));
        self.put_small(&["backups", id, &name], body)
    }

    /// Every backup in the store (by its manifest), oldest first (ids sort by time).
    pub fn manifests(&self) -> Result<Vec<ManifestObject>> {
        Ok(manifests_in(&self.list(&["backups"])?))
    }

    /// Deletes every object of backup `id` (its manifest first: it stops being listed).
    pub(super) fn delete_backup(&self, id: &str) -> Result<()> {
        let mut objects = self.list(&["backups", id])?;
        objects.sort_by_key(|o| o.below.last().and_then(|n| manifest_sha(n)).is_none());
        objects.iter().try_for_each(|o| self.delete(&o.location))
    }

    /// Every object under `parts` (a folder of the layout): its path below it, size and time.
    pub(super) fn list(&self, parts: &[&str]) -> Result<Vec<Listed>> {
        let root = self.path(parts);
        let listed: Vec<_> = self
            .handle
            .block_on(self.store.list(Some(&root)).collect::<Vec<_>>());
        let root_parts = root.parts().count();
        listed
            .into_iter()
            .map(|meta| {
                let meta: ObjectMeta = meta.map_err(|e| store_error("list", root.as_ref(), e))?;
                let below: Vec<String> = meta
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Ok(Listed {
                    below,
                    size_bytes: meta.size,
                    modified: meta.last_modified,
                    location: meta.location,
                })
            })
            .collect()
    }

    /// Stores a small object at `parts`.
    pub(super) fn put_small(&self, parts: &[&str], body: &[u8]) -> Result<()> {
        let location = self.path(parts);
        let put = self.store.put(&location, PutPayload::from(body.to_vec()));
        self.handle
            .block_on(put)
            .map_err(|e| store_error("upload", location.as_ref(), e))?;
        Ok(())
    }

    /// Deletes the object at `parts` (one that is already gone is fine).
    pub(super) fn delete_object(&self, parts: &[&str]) -> Result<()> {
        self.delete(&self.path(parts))
    }

    /// Deletes the object at `location` (one that is already gone is fine).
    pub(super) fn delete(&self, location: &StorePath) -> Result<()> {
        match self.handle.block_on(self.store.delete(location)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error("delete", location.as_ref(), e)),
        }
    }

    /// A manifest's bytes, checked against its name.
    pub fn read_manifest(&self, manifest: &ManifestObject) -> Result<Vec<u8>> {
        let location = manifest.location.to_string();
        let got = self
            .handle
            .block_on(async { self.store.get(&manifest.location).await?.bytes().await })
            .map_err(|e| store_error("read", &location, e))?;
        if sha256_hex(&got) != manifest.sha256 {
            return Err(Error::corrupt(
                std::path::Path::new(&location),
                "the backup manifest does not match its checksum",
            ));
        }
        Ok(got.to_vec())
    }
}

/// Reads a blob chunk by chunk, hashing what passes.
pub struct BlobReader<'a> {
    handle: &'a Handle,
    stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    hasher: Sha256,
    want: String,
    left: u64,
    location: String,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return self.end(),
            }
        }
        let n = buf.len().min(self.chunk.len());
        if n as u64 > self.left {
            return Err(self.corrupt("is longer than the backup says"));
        }
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

impl BlobReader<'_> {
    /// Reads to the blob's end, where its length and hash are checked: corruption if they
    /// fail.
    pub fn verify(mut self) -> Result<()> {
        let location = self.location.clone();
        let extra = std::io::copy(&mut self, &mut std::io::sink())
            .map_err(|e| Error::corrupt(std::path::Path::new(&location), e.to_string()))?;
        debug_assert_eq!(extra, 0, "a longer blob fails before its end");
        Ok(())
    }

    fn end(&mut self) -> std::io::Result<usize> {
        if self.left != 0 {
            return Err(self.corrupt("is shorter than the backup says"));
        }
        let got = hex(&std::mem::take(&mut self.hasher).finalize());
        if got != self.want {
            return Err(self.corrupt("does not match its checksum"));
        }
        Ok(0)
    }

    fn corrupt(&self, what: &str) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("backup object {} {what}", self.location),
        )
    }
}

/// Fills `buf` as far as `input` goes; how much it read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store's failure as an I/O error (58030) that says what was done where.
fn store_error(context: &'static str, location: &str, e: object_store::Error) -> Error {
    Error::io(
        context,
        std::path::Path::new(location),
        std::io::Error::other(e.to_string()),
    )
}
