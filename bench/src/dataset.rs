//! A benchmark dataset: base vectors, queries, the metric, and the exact top-100 of every
//! query. Generated (a seeded Gaussian mixture) or read from files; the ground truth is read
//! from a file, or computed once and cached (beside the data where that folder is writable,
//! else in the cache folder).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use crate::files;
use crate::progress;
use crate::synthetic::gaussian_mixture;
use crate::truth::exact_top_k;
use crate::vectors::{Metric, Vectors};

/// Neighbours kept per query in the ground truth (recall@k needs k of them).
pub const TRUTH_K: usize = 100;

/// Which data to benchmark on.
#[derive(clap::Args, Clone, Debug)]
pub struct DatasetArgs {
    /// Generate a seeded Gaussian mixture of ROWS vectors of DIM floats (e.g. 100000x128)
    #[arg(
        long,
        value_name = "ROWSxDIM",
        conflicts_with = "base",
        required_unless_present = "base"
    )]
    pub synthetic: Option<Shape>,
    /// Queries to generate with --synthetic
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub queries: usize,
    /// Seed of the generated data
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Base vectors to load: .npy (2-d float32) or .fvecs
    #[arg(long, value_name = "FILE", requires = "query_file")]
    pub base: Option<PathBuf>,
    /// Query vectors, with --base: .npy (2-d float32) or .fvecs
    #[arg(long, value_name = "FILE")]
    pub query_file: Option<PathBuf>,
    /// Exact neighbours of the queries (row numbers of --base, nearest first): .npy or .ivecs.
    /// Computed and cached when not given
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Distance the index and the queries use (l2: <->, cosine: <=>, ip: <#>)
    #[arg(long, value_enum, default_value = "l2")]
    pub metric: Metric,
    /// Use only the first N base vectors (the ground truth is then computed for that cut)
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
    /// Use only the first N queries
    #[arg(long, value_name = "N")]
    pub max_queries: Option<usize>,
    /// Folder for computed ground truth and generated files
    #[arg(long, value_name = "DIR", default_value = "target/bench-data")]
    pub cache_dir: PathBuf,
    /// The dataset's name in reports [default: synthetic-ROWSxDIM, or the base file's name]
    #[arg(long, value_name = "NAME")]
    pub dataset_name: Option<String>,
}

/// `ROWSxDIM`, as in `100000x128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub dim: usize,
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Shape, String> {
        let bad = || format!("'{s}' is not ROWSxDIM (e.g. 100000x128)");
        let (rows, dim) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let number = |t: &str| t.replace('_', "").parse::<usize>().map_err(|_| bad());
        let shape = Shape {
            rows: number(rows)?,
            dim: number(dim)?,
        };
        if shape.rows == 0 || shape.dim == 0 || shape.dim > 16_000 {
            return Err(format!("'{s}': rows must be at least 1 and DIM 1 to 16000"));
        }
        Ok(shape)
    }
}

pub struct Dataset {
    pub name: String,
    pub metric: Metric,
    pub base: Vectors,
    pub queries: Vectors,
    /// `TRUTH_K` (or fewer, if the base is that small) exact neighbour ids per query.
    pub truth: Vec<Vec<u32>>,
}

/// What a report says about the data.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetInfo {
    pub name: String,
    pub rows: usize,
    pub dim: usize,
    pub queries: usize,
    pub metric: Metric,
}

impl Dataset {
    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            name: self.name.clone(),
            rows: self.base.len(),
            dim: self.base.dim(),
            queries: self.queries.len(),
            metric: self.metric,
        }
    }
}

impl DatasetArgs {
    /// Generates or reads the vectors, then reads, loads from cache or computes the truth.
    pub fn open(&self) -> Result<Dataset> {
        let (name, base, queries) = self.vectors()?;
        let full_rows = base.len();
        let base = base.truncated(self.max_rows.unwrap_or(usize::MAX));
        let queries = queries.truncated(self.max_queries.unwrap_or(usize::MAX));
        ensure!(
            !base.is_empty() && !queries.is_empty(),
            "the dataset has no vectors or no queries"
        );
        ensure!(
            base.dim() == queries.dim(),
            "base vectors have {} dimensions, queries {}",
            base.dim(),
            queries.dim()
        );
        let name = self.dataset_name.clone().unwrap_or(name);
        let given = match (&self.truth, self.max_rows) {
            (Some(_), Some(rows)) if rows < full_rows => {
                eprintln!("vecraft-bench: --max-rows cuts the base, so --truth is recomputed");
                None
            }
            (Some(path), _) => Some(files::read_ids(path)?),
            (None, _) => None,
        };
        let truth = match given {
            Some(mut rows) => {
                ensure!(
                    rows.len() >= queries.len(),
                    "{} truth rows for {} queries",
                    rows.len(),
                    queries.len()
                );
                rows.truncate(queries.len());
                rows
            }
            None => self.cached_truth(&name, &base, &queries)?,
        };
        let k = TRUTH_K.min(base.len());
        ensure!(
            truth.iter().all(|r| r.len() >= k.min(10)),
            "ground-truth rows hold too few ids"
        );
        ensure!(
            truth.iter().flatten().all(|&id| (id as usize) < base.len()),
            "the ground truth names rows beyond the {} base vectors",
            base.len()
        );
        Ok(Dataset {
            name,
            metric: self.metric,
            base,
            queries,
            truth,
        })
    }

    fn vectors(&self) -> Result<(String, Vectors, Vectors)> {
        if let Some(shape) = self.synthetic {
            let name = format!("synthetic-{}x{}", shape.rows, shape.dim);
            let bar = progress::spinner(format!("generating {name}"));
            let (base, queries) = gaussian_mixture(shape.rows, self.queries, shape.dim, self.seed);
            bar.finish_and_clear();
            return Ok((name, base, queries));
        }
        let (Some(base), Some(query_file)) = (&self.base, &self.query_file) else {
            bail!("give --synthetic ROWSxDIM, or --base FILE with --query-file FILE");
        };
        let stem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
        let name = stem.strip_suffix("_base").unwrap_or(stem).to_string();
        Ok((
            name,
            files::read_vectors(base)?,
            files::read_vectors(query_file)?,
        ))
    }

    /// The truth from a cache file named by the data's fingerprint, or computed and cached.
    fn cached_truth(&self, name: &str, base: &Vectors, queries: &Vectors) -> Result<Vec<Vec<u32>>> {
        let file = format!(
            "{name}.{}.top{TRUTH_K}.{:016x}.ivecs",
            self.metric.name(),
            fingerprint(base, queries)
        );
        let beside_data = self
            .base
            .as_ref()
            .and_then(|b| b.parent())
            .map(Path::to_path_buf);
        let folders: Vec<PathBuf> = beside_data
            .into_iter()
            .chain([self.cache_dir.clone()])
            .collect();
        for folder in &folders {
            let path = folder.join(&file);
            if path.exists() {
                return files::read_ids(&path);
            }
        }
        let bar = progress::bar(queries.len() as u64, "exact top-100 (ground truth)");
        let truth = exact_top_k(base, queries, self.metric, TRUTH_K, &bar);
        bar.finish_and_clear();
        // The first folder that takes the file keeps it (shared data may be read-only).
        let saved = folders.iter().any(|folder| {
            std::fs::create_dir_all(folder).is_ok()
                && files::write_ivecs(&folder.join(&file), &truth).is_ok()
        });
        if !saved {
            eprintln!(
                "vecraft-bench: could not cache the ground truth in {}",
                folders.last().expect("one").display()
            );
        }
        Ok(truth)
    }
}

/// A 64-bit fingerprint of the vectors, so a changed file never meets a stale cached truth.
fn fingerprint(base: &Vectors, queries: &Vectors) -> u64 {
    let mix = |h: u64, word: u64| (h ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    let mut h = mix(0xcbf2_9ce4_8422_2325, base.dim() as u64);
    for x in base.as_slice().iter().chain(queries.as_slice()) {
        h = mix(h, u64::from(x.to_bits()));
    }
    mix(mix(h, base.len() as u64), queries.len() as u64)
}

/// Writes a generated dataset as `.npy` base and query files and an `.ivecs` ground truth.
pub fn write_files(dataset: &Dataset, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = dir.join(format!("{}_base.npy", dataset.name));
    let queries = dir.join(format!("{}_query.npy", dataset.name));
    let truth = dir.join(format!("{}_gt.ivecs", dataset.name));
    files::write_npy(&base, &dataset.base)?;
    files::write_npy(&queries, &dataset.queries)?;
    files::write_ivecs(&truth, &dataset.truth)?;
    Ok(vec![base, queries, truth])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        data: DatasetArgs,
    }

    fn args(line: &[&str]) -> DatasetArgs {
        Cli::try_parse_from(std::iter::once("test").chain(line.iter().copied()))
            .unwrap()
            .data
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(
            "100000x128".parse(),
            Ok(Shape {
                rows: 100_000,
                dim: 128
            })
        );
        assert_eq!(
            "1_000_000X96".parse(),
            Ok(Shape {
                rows: 1_000_000,
                dim: 96
            })
        );
        assert!("100000".parse::<Shape>().is_err());
        assert!("0x128".parse::<Shape>().is_err());
        assert!("10x16001".parse::<Shape>().is_err());
    }

    #[test]
    fn generated_truth_is_cached_and_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let cache = cache.to_str().unwrap();
        let line = [
            "--synthetic",
            "300x8",
            "--queries",
            "12",
            "--cache-dir",
            cache,
            "--metric",
            "cosine",
        ];
        let first = args(&line).open().unwrap();
        assert_eq!(
            (first.base.len(), first.queries.len(), first.truth[0].len()),
            (300, 12, 100)
        );
        let cached: Vec<_> = std::fs::read_dir(cache).unwrap().collect();
        assert_eq!(cached.len(), 1, "one ground-truth file");
        // A second open reads the cached file, which holds the same answer.
        assert_eq!(args(&line).open().unwrap().truth, first.truth);

        // Written out and read back as files, the dataset is the same, truth included.
        let written = write_files(&first, &dir.path().join("out")).unwrap();
        let [base, queries, truth] = [0, 1, 2].map(|i| written[i].to_str().unwrap().to_string());
        let again = args(&[
            "--base",
            &base,
            "--query-file",
            &queries,
            "--truth",
            &truth,
            "--metric",
            "cosine",
        ])
        .open()
        .unwrap();
        assert_eq!(again.name, "synthetic-300x8");
        assert_eq!(
            (again.base, again.queries, again.truth),
            (first.base, first.queries, first.truth)
        );
    }

    #[test]
    fn a_cut_base_gets_its_own_truth() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().to_str().unwrap();
        let full = args(&[
            "--synthetic",
            "500x4",
            "--queries",
            "5",
            "--cache-dir",
            cache,
        ])
        .open()
        .unwrap();
        let cut = args(&[
            "--synthetic",
            "500x4",
            "--queries",
            "5",
            "--max-rows",
            "50",
            "--max-queries",
            "3",
            "--cache-dir",
            cache,
        ])
        .open()
        .unwrap();
        assert_eq!(
            (cut.base.len(), cut.queries.len(), cut.truth.len()),
            (50, 3, 3)
        );
        assert_eq!(cut.truth[0].len(), 50, "every row, when fewer than 100");
        assert!(cut.truth.iter().flatten().all(|&id| id < 50));
        assert_eq!(cut.queries.row(0), full.queries.row(0));
    }
}
