//! The command line: `run` (one server), `compare` (two, interleaved, with ratios), `truth`
//! (compute and cache the ground truth) and `generate` (write a synthetic dataset to files).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::dataset::{DatasetArgs, write_files};
use crate::plot::recall_qps_svg;
use crate::report::Report;
use crate::run::{CONNECT_TIMEOUT, Plan, run};
use crate::server::{IndexSpec, Target, wait_until_up};

/// Benchmarks PostgreSQL-wire servers that speak pgvector's SQL (Vecraft, PostgreSQL +
/// pgvector): binary COPY load, HNSW index build, and an ef_search sweep measuring recall@k
/// against exact ground truth, QPS and latency percentiles at several connection counts.
#[derive(Parser, Debug)]
#[command(name = "vecraft-bench", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark one server
    Run(RunArgs),
    /// Benchmark two servers with the same work, rounds interleaved (A B A B …), and print
    /// medians with the ratio A/B of every figure
    Compare(CompareArgs),
    /// Compute the exact top-100 neighbours of a dataset's queries (multi-threaded) and cache
    /// them
    Truth(TruthArgs),
    /// Write a dataset (typically --synthetic) as .npy base and query files and an .ivecs
    /// ground truth, for other tools to read
    Generate(GenerateArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The server, as a libpq URL or key=value string
    #[arg(long, value_name = "DSN")]
    dsn: String,
    /// The server's name in reports
    #[arg(long, default_value = "server")]
    name: String,
    /// A local process (the server's) whose resident memory is reported after the query rounds
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The first server, NAME=DSN (e.g. vecraft=postgresql://postgres@127.0.0.1:5433/postgres)
    a: Target,
    /// The second server, NAME=DSN (e.g. pgvector=postgresql://postgres@127.0.0.1:55432/bench)
    b: Target,
    /// The first server's process, for its resident memory
    #[arg(long, value_name = "PID")]
    a_pid: Option<u32>,
    /// The second server's process, for its resident memory
    #[arg(long, value_name = "PID")]
    b_pid: Option<u32>,
    #[command(flatten)]
    job: JobArgs,
}

/// The data, the work and where the results go: the same for `run` and `compare`.
#[derive(Args, Debug)]
struct JobArgs {
    #[command(flatten)]
    data: DatasetArgs,
    #[command(flatten)]
    work: WorkArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
struct TruthArgs {
    #[command(flatten)]
    data: DatasetArgs,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    #[command(flatten)]
    data: DatasetArgs,
    /// Folder for NAME_base.npy, NAME_query.npy and NAME_gt.ivecs
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The work done on each server.
#[derive(Args, Debug)]
struct WorkArgs {
    /// Table to create, load and query (dropped first, unless --reuse)
    #[arg(long, default_value = "vecraft_bench")]
    table: String,
    /// Neighbours asked per query (LIMIT k); recall@k is measured
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// HNSW m of the index
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction of the index
    #[arg(long, default_value_t = 64)]
    ef_construction: usize,
    /// The index statement instead of CREATE INDEX … USING hnsw; {table}, {opclass}, {m} and
    /// {ef_construction} are filled in; '' builds no index (exact search)
    #[arg(long, value_name = "SQL")]
    index_sql: Option<String>,
    /// hnsw.ef_search values to sweep
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "10,20,40,80,160,320"
    )]
    ef_search: Vec<usize>,
    /// Concurrent connections to measure each ef_search with
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,4,16"
    )]
    connections: Vec<usize>,
    /// Query rounds; every figure is the median over them
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Times the load and index build are repeated (interleaved); their figures are medians
    #[arg(long, default_value_t = 1)]
    load_rounds: usize,
    /// Skip the load: the table is already there, loaded and indexed
    #[arg(long)]
    reuse: bool,
    /// `SELECT 1` round trips per round with 1 and with 4 connections (0: skip)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    select1: usize,
    /// Queries asked before each ef_search's measured passes
    #[arg(long, value_name = "N", default_value_t = 100)]
    warmup: usize,
}

#[derive(Args, Debug)]
struct OutputArgs {
    /// Write the report as JSON (every round's figures included)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the recall–QPS curve as SVG
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write the markdown tables to a file as well as to stdout
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

impl WorkArgs {
    fn plan(&self) -> Result<Plan> {
        anyhow::ensure!(self.k > 0, "--k must be at least 1");
        anyhow::ensure!(
            self.connections.iter().all(|&c| c > 0),
            "--connections must be at least 1"
        );
        anyhow::ensure!(
            self.table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--table must be a plain name (letters, digits, _)"
        );
        Ok(Plan {
            table: self.table.clone(),
            k: self.k,
            index: IndexSpec {
                m: self.m,
                ef_construction: self.ef_construction,
                sql: self.index_sql.clone(),
            },
            ef_search: self.ef_search.clone(),
            connections: self.connections.clone(),
            rounds: self.rounds,
            load_rounds: self.load_rounds,
            reuse: self.reuse,
            select1_round_trips: self.select1,
            warmup_queries: self.warmup,
        })
    }
}

/// Parses `args` (the program name first) and does what they say.
pub fn main_with<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    // One client thread: the client's own cost stays small and the same for every server.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(execute(cli))
}

async fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => {
            let target = Target {
                name: a.name,
                dsn: a.dsn,
                pid: a.pid,
            };
            benchmark(vec![target], &a.job).await
        }
        Command::Compare(a) => {
            let targets = vec![
                Target {
                    pid: a.a_pid,
                    ..a.a
                },
                Target {
                    pid: a.b_pid,
                    ..a.b
                },
            ];
            anyhow::ensure!(
                targets[0].name != targets[1].name,
                "the two servers need different names"
            );
            benchmark(targets, &a.job).await
        }
        Command::Truth(a) => {
            let data = a.data.open()?;
            println!(
                "{}: {} queries, exact top-{} ready",
                data.name,
                data.queries.len(),
                data.truth[0].len()
            );
            Ok(())
        }
        Command::Generate(a) => {
            let data = a.data.open()?;
            for path in write_files(&data, &a.out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

async fn benchmark(targets: Vec<Target>, job: &JobArgs) -> Result<()> {
    let plan = job.work.plan()?;
    for target in &targets {
        wait_until_up(&target.dsn, CONNECT_TIMEOUT).await?;
    }
    let data = job.data.open()?;
    let report = run(&targets, &data, &plan).await?;
    write_outputs(&report, &job.output)
}

fn write_outputs(report: &Report, output: &OutputArgs) -> Result<()> {
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &output.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.svg {
        recall_qps_svg(report, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_is_documented() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{id} has no help",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn compare_takes_two_named_servers() {
        let cli = Cli::try_parse_from([
            "vecraft-bench",
            "compare",
            "v=postgresql://a/b",
            "pg=postgresql://c/d",
            "--synthetic",
            "10x2",
            "--ef-search",
            "10,40",
            "--connections",
            "1,4",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else {
            panic!("compare")
        };
        assert_eq!((args.a.name.as_str(), args.b.name.as_str()), ("v", "pg"));
        assert_eq!(args.job.work.ef_search, vec![10, 40]);
        assert_eq!(args.job.work.plan().unwrap().connections, vec![1, 4]);
        assert!(
            Cli::try_parse_from([
                "vecraft-bench",
                "compare",
                "v=postgresql://a/b",
                "--synthetic",
                "10x2"
            ])
            .is_err()
        );
        // A dataset is needed: generated, or files.
        assert!(Cli::try_parse_from(["vecraft-bench", "run", "--dsn", "x"]).is_err());
    }
}
