//! PostgreSQL's session-level advisory locks: `pg_advisory_lock(key)` waits until no other
//! session holds `key`, `pg_try_advisory_lock(key)` answers at once, `pg_advisory_unlock(key)`
//! and `pg_advisory_unlock_all()` release, and a session's locks go when it ends. Migration
//! tools (Flyway, Liquibase, golang-migrate) and vector stores take them to keep two processes
//! from changing a schema at once.
//!
//! Locks are re-entrant: a session holds a key as many times as it took it. A key is one
//! `bigint` or a pair of `integer`s, two separate spaces as in PostgreSQL. The table of held
//! keys belongs to one gateway (`Catalog::advisory_locks`): sessions of different gateways
//! of a cluster do not exclude each other.
//!
//! Waiting holds no thread: `pg_advisory_lock` is an asynchronous function that waits on a
//! notification, so a cancel or `statement_timeout` ends the wait (and takes nothing).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// An advisory lock's key: `pg_advisory_lock(bigint)` or `pg_advisory_lock(int, int)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    One(i64),
    Two(i32, i32),
}

/// Who holds a key, and how many times.
#[derive(Debug)]
struct Holder {
    session: u64,
    count: u32,
}

/// One gateway's advisory locks.
#[derive(Debug, Default)]
pub struct AdvisoryLocks {
    held: Mutex<HashMap<Key, Holder>>,
    /// Woken whenever a key is released.
    released: Notify,
    next_session: AtomicU64,
}

impl AdvisoryLocks {
    /// A new session's identity in this table.
    pub fn session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    fn try_lock(&self, session: u64, key: Key) -> bool {
        let mut held = self.held.lock();
        let holder = held.entry(key).or_insert(Holder { session, count: 0 });
        if holder.session != session {
            return false;
        }
        holder.count += 1;
        true
    }

    async fn lock(&self, session: u64, key: Key) {
        loop {
            // Registered before trying, so a release between the try and the wait wakes it.
            let released = self.released.notified();
            if self.try_lock(session, key) {
                return;
            }
            released.await;
        }
    }

    /// Releases one hold of `key`; `false` if `session` does not hold it.
    fn unlock(&self, session: u64, key: Key) -> bool {
        let mut held = self.held.lock();
        let Some(holder) = held.get_mut(&key).filter(|h| h.session == session) else {
            return false;
        };
        debug_assert!(holder.count > 0, "a held key is held at least once");
        holder.count -= 1;
        if holder.count == 0 {
            held.remove(&key);
            self.released.notify_waiters();
        }
        true
    }

    /// Releases every key `session` holds (at `pg_advisory_unlock_all()` and session end).
    pub fn unlock_all(&self, session: u64) {
        let mut held = self.held.lock();
        let before = held.len();
        held.retain(|_, h| h.session != session);
        if held.len() != before {
            self.released.notify_waiters();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LockFn {
    Lock,
    TryLock,
    Unlock,
    UnlockAll,
}

/// One of the functions, bound to the session that calls it.
#[derive(Debug)]
struct LockUdf {
    function: LockFn,
    session: u64,
    locks: Arc<AdvisoryLocks>,
    signature: Signature,
}

impl PartialEq for LockUdf {
    fn eq(&self, other: &Self) -> bool {
        self.function == other.function
            && self.session == other.session
            && Arc::ptr_eq(&self.locks, &other.locks)
    }
}

impl Eq for LockUdf {}

impl std::hash::Hash for LockUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.function, self.session).hash(state);
    }
}

/// The advisory lock functions of `session`, for its context.
pub fn udfs(locks: &Arc<AdvisoryLocks>, session: u64) -> Vec<ScalarUDF> {
    let udf = |function| LockUdf {
        function,
        session,
        locks: Arc::clone(locks),
        signature: match function {
            LockFn::UnlockAll => Signature::nullary(Volatility::Volatile),
            _ => Signature::variadic_any(Volatility::Volatile),
        },
    };
    let mut out = vec![AsyncScalarUDF::new(Arc::new(udf(LockFn::Lock))).into_scalar_udf()];
    for function in [LockFn::TryLock, LockFn::Unlock, LockFn::UnlockAll] {
        out.push(ScalarUDF::new_from_impl(udf(function)));
    }
    out
}

impl ScalarUDFImpl for LockUdf {
    fn name(&self) -> &str {
        match self.function {
            LockFn::Lock => "pg_advisory_lock",
            LockFn::TryLock => "pg_try_advisory_lock",
            LockFn::Unlock => "pg_advisory_unlock",
            LockFn::UnlockAll => "pg_advisory_unlock_all",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.function {
            LockFn::TryLock | LockFn::Unlock => DataType::Boolean,
            LockFn::Lock | LockFn::UnlockAll => DataType::Utf8, // void, whose text is empty
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let answers: ArrayRef = match self.function {
            LockFn::Lock => return internal_err!("pg_advisory_lock runs through AsyncFuncExec"),
            LockFn::UnlockAll => {
                self.locks.unlock_all(self.session);
                Arc::new(StringArray::from(vec![""; rows]))
            }
            LockFn::TryLock => {
                Arc::new(self.each_key(&args, |key| self.locks.try_lock(self.session, key))?)
            }
            LockFn::Unlock => {
                Arc::new(self.each_key(&args, |key| self.locks.unlock(self.session, key))?)
            }
        };
        Ok(ColumnarValue::Array(answers))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for LockUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // Once per row, as PostgreSQL calls it; a NULL key takes nothing.
        for key in keys(&args)?.into_iter().flatten() {
            self.locks.lock(self.session, key).await;
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![
            "";
            rows
        ]))))
    }
}

impl LockUdf {
    /// `f` of each row's key; NULL where the key is NULL.
    fn each_key(&self, args: &ScalarFunctionArgs, f: impl Fn(Key) -> bool) -> Result<BooleanArray> {
        Ok(keys(args)?.into_iter().map(|k| k.map(&f)).collect())
    }
}

/// Each row's key: one bigint argument, or two integers.
fn keys(args: &ScalarFunctionArgs) -> Result<Vec<Option<Key>>> {
    let rows = args.number_rows;
    let column = |at: usize| -> Result<ArrayRef> {
        Ok(cast(&args.args[at].to_array(rows)?, &DataType::Int64)?)
    };
    match args.args.len() {
        1 => {
            let one = column(0)?;
            Ok(one
                .as_primitive::<Int64Type>()
                .iter()
                .map(|k| k.map(Key::One))
                .collect())
        }
        2 => {
            let (first, second) = (column(0)?, column(1)?);
            let (first, second) = (
                first.as_primitive::<Int64Type>(),
                second.as_primitive::<Int64Type>(),
            );
            let pair = |a: Option<i64>, b: Option<i64>| -> Result<Option<Key>> {
                let (Some(a), Some(b)) = (a, b) else {
                    return Ok(None);
                };
                match (i32::try_from(a), i32::try_from(b)) {
                    (Ok(a), Ok(b)) => Ok(Some(Key::Two(a, b))),
                    _ => plan_err!("integer out of range"),
                }
            };
            (0..first.len())
                .map(|i| {
                    pair(
                        first.is_valid(i).then(|| first.value(i)),
                        second.is_valid(i).then(|| second.value(i)),
                    )
                })
                .collect()
        }
        n => {
            plan_err!("advisory lock functions take one bigint or two integers, not {n} arguments")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_key_excludes_other_sessions_until_released() {
        let locks = Arc::new(AdvisoryLocks::default());
        let (a, b) = (locks.session_id(), locks.session_id());
        assert!(locks.try_lock(a, Key::One(7)));
        assert!(locks.try_lock(a, Key::One(7)), "re-entrant");
        assert!(!locks.try_lock(b, Key::One(7)));
        assert!(
            locks.try_lock(b, Key::Two(0, 7)),
            "the two-key space is another"
        );
        let waiter = tokio::spawn({
            let locks = Arc::clone(&locks);
            async move { locks.lock(b, Key::One(7)).await }
        });
        assert!(locks.unlock(a, Key::One(7)));
        assert_eq!(
            locks.held.lock()[&Key::One(7)].session,
            a,
            "a took it twice"
        );
        locks.unlock_all(a);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the waiter gets the key once it is free")
            .unwrap();
        assert!(!locks.unlock(a, Key::One(7)), "a no longer holds it");
        assert!(!locks.try_lock(a, Key::One(7)));
    }
}
