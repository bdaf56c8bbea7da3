//! How fresh a read must be (`SET vecraft.consistency`), and so which replica of a shard may
//! answer it:
//!
//! - `strong`: the leader, after confirming with a quorum that it still leads and applying
//!   everything committed when the read began (openraft's read index). A read that starts
//!   after a write was acknowledged sees it, across leader changes.
//! - `bounded`: any replica that has applied everything this gateway saw acknowledged on the
//!   shard, less at most `BOUNDED_LAG_ENTRIES` entries, waiting up to `BOUNDED_WAIT_MS` for it
//!   to get there; otherwise the leader answers.
//! - `eventual`: any live replica, as it is.
//!
//! On one node every shard has one replica, so the three are the same.

use std::fmt;
use std::str::FromStr;

/// How many entries behind the freshest index this gateway has seen a `bounded` read may be.
pub const BOUNDED_LAG_ENTRIES: u64 = 1_000;
/// How long a replica may wait to catch up to a `bounded` read's index before it refuses.
pub const BOUNDED_WAIT_MS: u64 = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Consistency {
    #[default]
    Strong,
    Bounded,
    Eventual,
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strong" => Ok(Consistency::Strong),
            "bounded" => Ok(Consistency::Bounded),
            "eventual" => Ok(Consistency::Eventual),
            other => Err(format!(
                "invalid value for parameter \"vecraft.consistency\": \"{other}\" \
                 (strong, bounded or eventual)"
            )),
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consistency::Strong => "strong",
            Consistency::Bounded => "bounded",
            Consistency::Eventual => "eventual",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name_and_print_back() {
        for level in [
            Consistency::Strong,
            Consistency::Bounded,
            Consistency::Eventual,
        ] {
            assert_eq!(level.to_string().parse::<Consistency>(), Ok(level));
        }
        assert_eq!(" EVENTUAL ".parse(), Ok(Consistency::Eventual));
        let e = "linearizable".parse::<Consistency>().unwrap_err();
        assert!(e.contains("strong, bounded or eventual"), "{e}");
    }
}
