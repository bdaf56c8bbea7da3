//! The settings of scheduled backups, as flags (`--backup-to`, `--backup-every`,
//! `--backup-keep`) or as a config file's `[backup_schedule]` table (`to`, `every`, `keep`);
//! `vecraft_sql::backup_schedule` runs them.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use vecraft_sql::backup_schedule::BackupSchedule;

const DEFAULT_EVERY: Duration = Duration::from_secs(3600);
const DEFAULT_KEEP: usize = 24;

#[derive(Debug, Default, Clone, PartialEq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleArgs {
    /// Back every collection up to this URL on a schedule (file:///DIR or s3://BUCKET/PREFIX;
    /// in a cluster, the meta group's leader takes each backup)
    #[arg(long, value_name = "URL")]
    #[serde(rename = "to")]
    pub backup_to: Option<String>,
    /// How often to take a scheduled backup, e.g. 30m, 6h, 1d [default: 1h]
    #[arg(long, value_name = "DURATION")]
    #[serde(rename = "every")]
    pub backup_every: Option<String>,
    /// How many backups to keep at --backup-to: after each scheduled backup, older ones (taken
    /// by hand too) and the blobs only they name are deleted [default: 24]
    #[arg(long, value_name = "N")]
    #[serde(rename = "keep")]
    pub backup_keep: Option<usize>,
}

impl ScheduleArgs {
    /// These settings, each falling back to `other`'s.
    pub fn or(self, other: ScheduleArgs) -> ScheduleArgs {
        ScheduleArgs {
            backup_to: self.backup_to.or(other.backup_to),
            backup_every: self.backup_every.or(other.backup_every),
            backup_keep: self.backup_keep.or(other.backup_keep),
        }
    }

    /// The schedule, if there is one.
    pub fn resolve(&self) -> Result<Option<BackupSchedule>, String> {
        let Some(url) = &self.backup_to else {
            if self.backup_every.is_some() || self.backup_keep.is_some() {
                return Err("--backup-every and --backup-keep need --backup-to".into());
            }
            return Ok(None);
        };
        let every = match &self.backup_every {
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| format!("invalid --backup-every \"{text}\": {e} (e.g. 30m, 6h)"))?,
            None => DEFAULT_EVERY,
        };
        if every < Duration::from_secs(1) {
            return Err("--backup-every must be at least 1s".into());
        }
        let keep = self.backup_keep.unwrap_or(DEFAULT_KEEP);
        if keep == 0 {
            return Err("--backup-keep must be at least 1".into());
        }
        Ok(Some(BackupSchedule {
            url: url.clone(),
            every,
            keep,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_needs_a_url_and_sane_numbers() {
        let args = |to: Option<&str>, every: Option<&str>, keep: Option<usize>| ScheduleArgs {
            backup_to: to.map(String::from),
            backup_every: every.map(String::from),
            backup_keep: keep,
        };
        assert_eq!(args(None, None, None).resolve(), Ok(None));
        let schedule = args(Some("file:///b"), Some("90m"), Some(3)).resolve();
        let expected = BackupSchedule {
            url: "file:///b".into(),
            every: Duration::from_secs(5400),
            keep: 3,
        };
        assert_eq!(schedule, Ok(Some(expected)));
        let defaults = args(Some("file:///b"), None, None)
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(
            (defaults.every, defaults.keep),
            (DEFAULT_EVERY, DEFAULT_KEEP)
        );
        for (bad, why) in [
            (args(None, Some("1h"), None), "need --backup-to"),
            (
                args(Some("file:///b"), Some("often"), None),
                "invalid --backup-every",
            ),
            (args(Some("file:///b"), Some("10ms"), None), "at least 1s"),
            (args(Some("file:///b"), None, Some(0)), "at least 1"),
        ] {
            let e = bad.resolve().unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let file: ScheduleArgs = toml::from_str("to = \"s3://b/p\"\nevery = \"1d\"").unwrap();
        let merged = args(None, None, Some(7)).or(file);
        assert_eq!(merged.backup_to.as_deref(), Some("s3://b/p"));
        assert_eq!(merged.resolve().unwrap().unwrap().keep, 7);
    }
}
