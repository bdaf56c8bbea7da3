//! Behavioural tests of the whole log: rolling, recovery from torn tails and corruption,
//! truncate/purge/meta across reopen, group commit, and crash consistency under SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::record::frame_size_bytes;
use super::segment::file_name;
use super::*;

fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(37) % 97) as usize;
    let mut bytes = index.to_le_bytes().to_vec();
    bytes.extend((0..len).map(|k| (index as u8).wrapping_mul(31).wrapping_add(k as u8)));
    bytes
}

fn other_payload(index: u64) -> Vec<u8> {
    format!("rewritten {index}").into_bytes()
}

fn entries(range: Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, payload(i))).collect()
}

fn opts(segment_size_bytes: u64) -> LogOptions {
    LogOptions { segment_size_bytes }
}

fn open(dir: &Path, segment_size_bytes: u64) -> (Log, Recovery) {
    Log::open(dir, opts(segment_size_bytes)).unwrap()
}

fn open_err(dir: &Path) -> Error {
    Log::open(dir, opts(1 << 20)).unwrap_err()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Asserts the log holds exactly `range` with `payload` contents.
fn assert_holds(log: &Log, range: Range<u64>) {
    let expected: Vec<(u64, Vec<u8>)> = entries(range.clone());
    assert_eq!(log.read(0..u64::MAX).unwrap(), expected);
    assert_eq!(log.first_index(), expected.first().map(|e| e.0));
    assert_eq!(log.last_index(), expected.last().map(|e| e.0));
}

fn is_invalid(result: Result<()>) -> bool {
    matches!(result, Err(Error::InvalidArgument(_)))
}

fn is_corrupt(error: &Error) -> bool {
    matches!(error, Error::Corrupt { .. })
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
}

#[test]
fn append_rolls_segments_reads_across_them_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (log, recovery) = open(dir.path(), 512);
    assert_eq!(recovery, Recovery::default());
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    let mut next = 1;
    for batch in [1u64, 3, 7, 1, 20, 50, 18, 100] {
        log.append(entries(next..next + batch)).unwrap();
        next += batch;
    }
    assert_eq!(next, 201);
    assert_holds(&log, 1..201);
    let files = segment_files(dir.path());
    assert!(files.len() > 5, "only {} segments", files.len());
    assert_eq!(
        files[0].file_name().unwrap().to_str(),
        Some(file_name(1).as_str())
    );
    assert_eq!(log.read(50..120).unwrap(), entries(50..120));
    assert_eq!(log.read(0..5).unwrap(), entries(1..5));
    assert_eq!(log.read(195..1000).unwrap(), entries(195..201));
    assert!(log.read(300..400).unwrap().is_empty());
    assert!(log.read(5..5).unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = log.read(10..3).unwrap();
    assert!(reversed.is_empty());
    drop(log);

    fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
    let (log, recovery) = open(dir.path(), 512);
    assert_eq!(recovery.segments, files.len());
    assert_eq!(recovery.records, 200);
    assert_eq!(
        (recovery.first_index, recovery.last_index),
        (Some(1), Some(200))
    );
    assert_eq!(
        (recovery.truncated_bytes, recovery.truncated_records),
        (0, 0)
    );
    assert_holds(&log, 1..201);
    log.append(entries(201..203)).unwrap();
    assert_holds(&log, 1..203);
}

#[test]
fn empty_log_accepts_any_first_index_including_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    log.append(entries(0..3)).unwrap();
    assert_holds(&log, 0..3);
    drop(log);
    let (log, _) = open(dir.path(), 1 << 20);
    assert_holds(&log, 0..3);
}

#[test]
fn contiguity_and_size_violations_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    log.append(entries(1..5)).unwrap();
    assert!(is_invalid(log.append(entries(6..7))));
    assert!(is_invalid(log.append(entries(4..6))));
    assert!(is_invalid(log.append(vec![(5, vec![]), (7, vec![])])));
    let too_big = vec![0u8; MAX_PAYLOAD_SIZE_BYTES + 1];
    assert!(is_invalid(log.append(vec![(5, too_big)])));
    let refused = log.append_with_callback(entries(9..10), Box::new(|_| panic!("called")));
    assert!(is_invalid(refused));
    log.append(Vec::new()).unwrap();
    log.append(entries(5..6)).unwrap();
    assert_holds(&log, 1..6);
    assert!(is_invalid(log.put_meta("purged", b"x")));
}

#[test]
fn reads_see_accepted_appends_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 256);
    let (tx, rx) = mpsc::channel();
    for i in 1..=50 {
        let tx = tx.clone();
        log.append_with_callback(entries(i..i + 1), Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        assert_eq!(log.read(i..i + 1).unwrap(), entries(i..i + 1));
        assert_eq!(log.last_index(), Some(i));
    }
    for _ in 1..=50 {
        rx.recv().unwrap().unwrap();
    }
    assert_holds(&log, 1..51);
}

// --- torn tails -------------------------------------------------------------------------

/// Writes `count` records, returning the last segment's bytes and where its last frame starts.
fn write_and_capture(dir: &Path, segment_size_bytes: u64, count: u64) -> (PathBuf, Vec<u8>, u64) {
    let (log, _) = open(dir, segment_size_bytes);
    for i in 1..=count {
        log.append(entries(i..i + 1)).unwrap();
    }
    drop(log);
    let last = segment_files(dir).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    let start = bytes.len() as u64 - frame_size_bytes(payload(count).len());
    (last, bytes, start)
}

/// Copies every segment of `from` into a fresh directory and returns it.
fn clone_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for file in segment_files(from) {
        fs::copy(&file, to.path().join(file.file_name().unwrap())).unwrap();
    }
    to
}

/// Reopens a damaged copy and checks that records 1..count-1 survive, `count` is gone
/// (unless `intact`), the cut is reported, and `count` can be appended again.
fn check_torn(dir: &Path, count: u64, intact: bool, cut_bytes: u64) {
    let (log, recovery) = open(dir, 1);
    let kept = if intact { count } else { count - 1 };
    assert_holds(&log, 1..kept + 1);
    assert_eq!(recovery.truncated_bytes, cut_bytes);
    assert_eq!(recovery.truncated_records, u64::from(cut_bytes > 0));
    assert_eq!(recovery.torn_detail.is_some(), cut_bytes > 0);
    assert_eq!(recovery.last_index, Some(kept));
    if !intact {
        log.append(vec![(count, other_payload(count))]).unwrap();
        let read = log.read(count..count + 1).unwrap();
        assert_eq!(read, vec![(count, other_payload(count))]);
        drop(log);
        let (log, recovery) = open(dir, 1);
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(log.last_index(), Some(count));
    }
}

/// Runs both damage kinds at every byte of the last frame for one layout.
fn torn_tail_everywhere(segment_size_bytes: u64) {
    const COUNT: u64 = 6;
    let source = tempfile::tempdir().unwrap();
    let (last, bytes, start) = write_and_capture(source.path(), segment_size_bytes, COUNT);
    let name = last.file_name().unwrap();
    let frame_len = bytes.len() as u64 - start;
    for cut in 0..=frame_len {
        let copy = clone_dir(source.path());
        fs::write(copy.path().join(name), &bytes[..(start + cut) as usize]).unwrap();
        let intact = cut == frame_len;
        check_torn(copy.path(), COUNT, intact, if intact { 0 } else { cut });
    }
    for at in 0..frame_len {
        let copy = clone_dir(source.path());
        let mut damaged = bytes.clone();
        damaged[(start + at) as usize] ^= 0x5a;
        fs::write(copy.path().join(name), &damaged).unwrap();
        check_torn(copy.path(), COUNT, false, frame_len);
    }
}

#[test]
fn torn_tail_at_every_byte_of_last_record_in_shared_segment() {
    torn_tail_everywhere(1 << 20);
}

#[test]
fn torn_tail_at_every_byte_of_record_alone_in_last_segment() {
    // One record per segment: cutting the last record empties its file, which is removed.
    torn_tail_everywhere(1);
}

#[test]
fn empty_trailing_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 256);
    log.append(entries(1..40)).unwrap();
    drop(log);
    fs::write(dir.path().join(file_name(40)), b"").unwrap();
    let (log, recovery) = open(dir.path(), 256);
    assert_eq!(recovery.removed_segments, 1);
    assert_eq!(recovery.truncated_bytes, 0);
    assert!(!dir.path().join(file_name(40)).exists());
    assert_holds(&log, 1..40);
    log.append(entries(40..45)).unwrap();
    assert_holds(&log, 1..45);
}

// --- corruption -------------------------------------------------------------------------

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

fn multi_segment_log(dir: &Path) -> Vec<PathBuf> {
    let (log, _) = open(dir, 512);
    log.append(entries(1..100)).unwrap();
    drop(log);
    let files = segment_files(dir);
    assert!(files.len() >= 3);
    files
}

#[test]
fn bad_record_in_earlier_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let files = multi_segment_log(dir.path());
    flip(&files[0], 40);
    assert!(is_corrupt(&open_err(dir.path())));
}

// --- zeros written ahead ----------------------------------------------------------------

/// Appends `bytes` zeros to `path`, as a crash leaves the zeros written ahead of records.
fn append_zeros(path: &Path, bytes: usize) {
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut file, &vec![0u8; bytes]).unwrap();
}

#[test]
fn small_appends_write_zeros_ahead_and_a_clean_close_cuts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 64 << 20);
    log.append(entries(1..4)).unwrap();
    let file = segment_files(dir.path()).pop().unwrap();
    let records_bytes: u64 = (1..4).map(|i| frame_size_bytes(payload(i).len())).sum();
    let open_len = fs::metadata(&file).unwrap().len();
    assert!(open_len >= records_bytes + (1 << 20), "{open_len}");
    drop(log);
    assert_eq!(fs::metadata(&file).unwrap().len(), records_bytes);
}

#[test]
fn zeros_after_the_last_record_are_its_end_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 64 << 20);
    log.append(entries(1..6)).unwrap();
    drop(log);
    let file = segment_files(dir.path()).pop().unwrap();
    append_zeros(&file, 300_000);
    let (log, recovery) = open(dir.path(), 64 << 20);
    assert_holds(&log, 1..6);
    assert_eq!(
        (recovery.truncated_bytes, recovery.truncated_records),
        (0, 0)
    );
    assert!(recovery.torn_detail.is_none());
    // Appends go into the zeros and survive a reopen.
    log.append(entries(6..9)).unwrap();
    drop(log);
    append_zeros(&file, 100);
    let (log, recovery) = open(dir.path(), 64 << 20);
    assert_holds(&log, 1..9);
    assert_eq!(recovery.truncated_bytes, 0);
}

#[test]
fn a_valid_record_after_zeros_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 64 << 20);
    log.append(entries(1..4)).unwrap();
    drop(log);
    let file = segment_files(dir.path()).pop().unwrap();
    let bytes = fs::read(&file).unwrap();
    let last_frame = frame_size_bytes(payload(3).len()) as usize;
    // Record 3 zeroed in place, its bytes kept after the zeros: zeros are no end there.
    let mut damaged = bytes[..bytes.len() - last_frame].to_vec();
    damaged.extend(std::iter::repeat_n(0u8, last_frame));
    damaged.extend_from_slice(&bytes[bytes.len() - last_frame..]);
    fs::write(&file, damaged).unwrap();
    let error = open_err(dir.path());
    assert!(is_corrupt(&error), "{error}");
}

#[test]
fn torn_tail_in_earlier_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let files = multi_segment_log(dir.path());
    let len = fs::metadata(&files[1]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(is_corrupt(&open_err(dir.path())));
}

#[test]
fn bad_record_followed_by_valid_ones_in_last_segment_is_corrupt() {
    let first = frame_size_bytes(payload(1).len()) as usize;
    // Damage record 2's payload, then its length field: both are followed by records 3..5.
    for at in [first + 20, first + 1] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = open(dir.path(), 1 << 20);
        log.append(entries(1..6)).unwrap();
        drop(log);
        let file = segment_files(dir.path()).pop().unwrap();
        flip(&file, at);
        let error = open_err(dir.path());
        assert!(is_corrupt(&error), "{error}");
        assert!(
            error.to_string().contains("valid record follows"),
            "{error}"
        );
    }
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let files = multi_segment_log(dir.path());
    fs::remove_file(&files[1]).unwrap();
    let error = open_err(dir.path());
    assert!(
        is_corrupt(&error) && error.to_string().contains("gap"),
        "{error}"
    );
}

#[test]
fn empty_middle_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    multi_segment_log(dir.path());
    fs::write(dir.path().join(file_name(2)), b"").unwrap();
    assert!(is_corrupt(&open_err(dir.path())));
}

#[test]
fn segment_name_disagreeing_with_its_records_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let files = multi_segment_log(dir.path());
    let renamed = files[1].with_file_name(file_name(1000));
    fs::rename(&files[2], renamed).unwrap();
    assert!(is_corrupt(&open_err(dir.path())));
}

#[test]
fn malformed_purge_point_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("meta-purged"), b"abc").unwrap();
    assert!(is_corrupt(&open_err(dir.path())));
}

// --- truncate, purge, meta ---------------------------------------------------------------

#[test]
fn truncate_then_append_again_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 512);
    log.append(entries(1..101)).unwrap();
    let before = segment_files(dir.path()).len();
    log.truncate(40).unwrap();
    assert_holds(&log, 1..40);
    assert!(segment_files(dir.path()).len() < before);
    log.truncate(1000).unwrap();
    assert_holds(&log, 1..40);
    let rewritten: Vec<(u64, Vec<u8>)> = (40..60).map(|i| (i, other_payload(i))).collect();
    log.append(rewritten.clone()).unwrap();
    drop(log);

    let (log, recovery) = open(dir.path(), 512);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(log.read(1..40).unwrap(), entries(1..40));
    assert_eq!(log.read(40..100).unwrap(), rewritten);
    log.truncate(1).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    assert!(segment_files(dir.path()).is_empty());
    log.append(entries(7..9)).unwrap();
    drop(log);
    let (log, _) = open(dir.path(), 512);
    assert_holds(&log, 7..9);
}

#[test]
fn truncate_is_ordered_after_in_flight_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 300);
    let (tx, rx) = mpsc::channel();
    for i in 1..50 {
        let tx = tx.clone();
        log.append_with_callback(entries(i..i + 1), Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
    }
    log.truncate(25).unwrap();
    for _ in 1..50 {
        rx.recv().unwrap().unwrap();
    }
    let rewritten: Vec<(u64, Vec<u8>)> = (25..30).map(|i| (i, other_payload(i))).collect();
    let tx2 = tx.clone();
    log.append_with_callback(rewritten.clone(), Box::new(move |r| tx2.send(r).unwrap()))
        .unwrap();
    log.truncate(28).unwrap();
    rx.recv().unwrap().unwrap();
    let expect = |log: &Log| {
        assert_eq!(log.read(1..25).unwrap(), entries(1..25));
        assert_eq!(log.read(25..100).unwrap(), rewritten[..3].to_vec());
        assert_eq!(log.last_index(), Some(27));
    };
    expect(&log);
    drop(log);
    let (log, _) = open(dir.path(), 300);
    expect(&log);
}

#[test]
fn purge_deletes_whole_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 512);
    log.append(entries(1..101)).unwrap();
    let before = segment_files(dir.path()).len();
    log.purge(40).unwrap();
    assert_eq!(log.last_purged(), Some(40));
    assert_holds(&log, 41..101);
    assert!(log.read(1..41).unwrap().is_empty());
    let files = segment_files(dir.path());
    assert!(files.len() < before);
    let first_kept = segment::parse_file_name(files[0].file_name().unwrap().to_str().unwrap());
    assert!(first_kept.unwrap() <= 41);
    drop(log);

    let (log, recovery) = open(dir.path(), 512);
    assert_eq!(recovery.last_purged, Some(40));
    assert_eq!(log.last_purged(), Some(40));
    assert_holds(&log, 41..101);
    log.purge(30).unwrap();
    assert_eq!(log.last_purged(), Some(40));
    log.purge(100).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    assert!(segment_files(dir.path()).is_empty());
    assert!(is_invalid(log.append(entries(100..101))));
    log.append(entries(150..160)).unwrap();
    drop(log);

    let (log, _) = open(dir.path(), 512);
    assert_eq!(log.last_purged(), Some(100));
    assert_holds(&log, 150..160);
}

#[test]
fn interrupted_purge_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let files = multi_segment_log(dir.path());
    // As if purge(99) crashed after saving the purge point but before deleting anything.
    fs::write(dir.path().join("meta-purged"), 99u64.to_le_bytes()).unwrap();
    // ...and one deletion (not the first) reached the disk.
    fs::remove_file(&files[1]).unwrap();
    let (log, recovery) = open(dir.path(), 512);
    assert_eq!(recovery.removed_segments, files.len() - 1);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!((log.first_index(), log.last_purged()), (None, Some(99)));
    log.append(entries(100..101)).unwrap();
}

#[test]
fn meta_round_trips_across_reopen_and_validates_names() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    assert_eq!(log.get_meta("vote").unwrap(), None);
    log.put_meta("vote", b"term 3 node 2").unwrap();
    log.put_meta("committed_2", b"").unwrap();
    log.put_meta("vote", b"term 4 node 1").unwrap();
    for bad in ["", "a/b", "..", "x.y", "a b", "é", &"n".repeat(65)] {
        assert!(is_invalid(log.put_meta(bad, b"v")), "{bad:?}");
        assert!(matches!(log.get_meta(bad), Err(Error::InvalidArgument(_))));
    }
    drop(log);
    let (log, _) = open(dir.path(), 1 << 20);
    assert_eq!(
        log.get_meta("vote").unwrap().as_deref(),
        Some(&b"term 4 node 1"[..])
    );
    assert_eq!(
        log.get_meta("committed_2").unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(log.get_meta("purged").unwrap(), None);
}

#[test]
fn second_open_of_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    assert!(matches!(open_err(dir.path()), Error::Io { .. }));
    drop(log);
    open(dir.path(), 1 << 20);
}

#[test]
fn close_flushes_queued_work_and_refuses_more() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    let (tx, rx) = mpsc::channel();
    for i in 1..=20 {
        let tx = tx.clone();
        log.append_with_callback(entries(i..i + 1), Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
    }
    log.close();
    for _ in 1..=20 {
        rx.recv().unwrap().unwrap();
    }
    assert!(matches!(log.append(entries(21..22)), Err(Error::Closed)));
    assert!(matches!(log.truncate(1), Err(Error::Closed)));
    log.close();
    drop(log);
    let (log, _) = open(dir.path(), 1 << 20);
    assert_holds(&log, 1..21);
}

#[test]
fn callbacks_may_not_block_on_the_log_and_panics_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    let log = Arc::new(log);
    let (tx, rx) = mpsc::channel();
    let inner = Arc::clone(&log);
    log.append_with_callback(
        entries(1..2),
        Box::new(move |r| {
            r.unwrap();
            tx.send(inner.append(entries(2..3))).unwrap();
        }),
    )
    .unwrap();
    assert!(is_invalid(rx.recv().unwrap()));
    log.append_with_callback(
        entries(2..3),
        Box::new(|_| panic!("callback panic (expected)")),
    )
    .unwrap();
    log.append(entries(3..4)).unwrap();
    assert_holds(&log, 1..4);
}

// --- group commit ------------------------------------------------------------------------

#[test]
fn group_commit_uses_fewer_fsyncs_than_appends() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), 1 << 20);
    let log = Arc::new(log);
    let next = Arc::new(parking_lot::Mutex::new(1u64));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (log, next) = (Arc::clone(&log), Arc::clone(&next));
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let (tx, rx) = mpsc::sync_channel(1);
                    {
                        let mut next = next.lock();
                        let done = Box::new(move |r| tx.send(r).unwrap());
                        log.append_with_callback(entries(*next..*next + 1), done)
                            .unwrap();
                        *next += 1;
                    }
                    rx.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.appends, THREADS * PER_THREAD);
    assert_eq!(stats.records, THREADS * PER_THREAD);
    assert!(stats.fsyncs < stats.appends, "{stats:?}");
    assert_holds(&log, 1..THREADS * PER_THREAD + 1);
}

// --- crash consistency with a real SIGKILL -----------------------------------------------

const CRASH_DIR_ENV: &str = "VECRAFT_LOG_CRASH_DIR";
const CRASH_SEGMENT_SIZE_BYTES: u64 = 4096;

/// Mostly small records, with a large one now and then so that a kill can land in the middle
/// of a multi-page write and leave a torn tail.
fn crash_payload(index: u64) -> Vec<u8> {
    if !index.is_multiple_of(64) {
        return payload(index);
    }
    let mut bytes = index.to_le_bytes().to_vec();
    bytes.extend((0..128 * 1024u32).map(|k| (k as u8).wrapping_mul(3) ^ index as u8));
    bytes
}

fn crash_entries(range: Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, crash_payload(i))).collect()
}

fn ack(index: u64) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "acked {index}");
    let _ = out.flush();
}

/// Child half of `crash_consistency_under_kill_9`: appends forever (until killed), printing
/// `acked <last index>` after each append is durable. Does nothing unless run by the parent.
#[test]
#[ignore = "child process of crash_consistency_under_kill_9"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let (log, _) = open(Path::new(&dir), CRASH_SEGMENT_SIZE_BYTES);
    let mut next = log.last_index().map_or(1, |last| last + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0u64.. {
        if Instant::now() > deadline {
            break;
        }
        let last = next + next % 4;
        let batch = crash_entries(next..last + 1);
        if round % 8 == 7 {
            log.append(batch).unwrap();
            ack(last);
        } else {
            let done = Box::new(move |r: Result<()>| {
                if r.is_ok() {
                    ack(last);
                }
            });
            log.append_with_callback(batch, done).unwrap();
        }
        next = last + 1;
    }
}

/// Runs one child until it has acknowledged `target` appends, then SIGKILLs it. Returns the
/// highest acknowledged index.
fn run_child_until(dir: &Path, target: usize) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "log::tests::crash_child",
            "--nocapture",
            "--ignored",
        ])
        .arg("--test-threads=1")
        .env(CRASH_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(index) = line
            .strip_prefix("acked ")
            .and_then(|s| s.parse::<u64>().ok())
        {
            acked.push(index);
            if acked.len() >= target {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acked.len(), target, "child stopped before {target} acks");
    acked.into_iter().max().unwrap()
}

#[test]
fn crash_consistency_under_kill_9() {
    const ROUNDS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut max_acked = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let target = rng.random_range(1..=120);
        max_acked = max_acked.max(run_child_until(dir.path(), target));
        let (log, recovery) = open(dir.path(), CRASH_SEGMENT_SIZE_BYTES);
        let last = log.last_index().unwrap();
        assert!(
            last >= max_acked,
            "round {round}: lost acked {max_acked}, last {last}"
        );
        assert_eq!(log.read(0..u64::MAX).unwrap(), crash_entries(1..last + 1));
        assert!(recovery.truncated_records <= 1);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
