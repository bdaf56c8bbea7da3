//! Every gateway finishes the transactions that another gateway (or this one, before a
//! restart) left prepared on the shards: once a second it looks at the shards of every
//! collection it knows and resolves the parts prepared longer than
//! `vecraft_cluster::txn::PENDING_TIMEOUT` as their coordinator decided (abort, if it had not).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use vecraft_cluster::txn::{PENDING_TIMEOUT, resolve_pending};

use crate::catalog::Catalog;

/// How often a gateway looks for transactions left prepared.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// Starts the resolver of `catalog`'s gateway; it ends when the catalog is dropped.
pub fn spawn(catalog: &Arc<Catalog>) {
    let catalog: Weak<Catalog> = Arc::downgrade(catalog);
    let started = std::thread::Builder::new()
        .name("vecraft-txn-resolver".into())
        .spawn(move || {
            loop {
                std::thread::sleep(RESOLVE_EVERY);
                let Some(catalog) = catalog.upgrade() else {
                    return;
                };
                let collections: BTreeMap<_, _> = catalog.all().into_iter().collect();
                drop(catalog);
                let resolved = resolve_pending(&collections, PENDING_TIMEOUT);
                if resolved > 0 {
                    eprintln!(
                        "vecraft: resolved {resolved} transaction part(s) left prepared on \
                         shards by an interrupted COMMIT"
                    );
                }
            }
        });
    if let Err(e) = started {
        eprintln!("vecraft: warning: cannot start the transaction resolver: {e}");
    }
}
