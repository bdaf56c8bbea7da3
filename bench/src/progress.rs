//! Progress on stderr for the long steps (generation, ground truth, load, index build). The
//! bars draw only on a terminal, so logs and CI output stay clean.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` items.
pub fn bar(total: u64, what: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(total).with_message(what.into());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:32} [{bar:30}] {human_pos}/{human_len} ({per_sec}, {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A spinner with the elapsed time, for steps whose size is unknown (a server's index build).
pub fn spinner(what: impl Into<String>) -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_message(what.into());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner
}
