//! Deep statements run on a deep stack.
//!
//! Parsing, planning, cloning, evaluating and dropping an expression all recurse on its
//! depth. A statement nested up to `vecraft_planner::parse::MAX_EXPRESSION_DEPTH` levels may
//! need far more stack than a runtime thread has (2 MiB by default; a debug build spends
//! kilobytes per level), so a statement deeper than [`SHALLOW_DEPTH`] is polled on a stack
//! of its own, [`DEEP_STACK_BYTES`] of address space of which it touches what it needs
//! (`stacker` switches to it and back on the same thread). Shallow statements, nearly all,
//! run as they are.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;

/// Statements whose expressions may nest deeper than this run on their own stack.
pub const SHALLOW_DEPTH: usize = 64;

/// The stack a deep statement gets.
pub const DEEP_STACK_BYTES: usize = 256 << 20;

/// Whether `sql` should run on its own stack.
pub fn is_deep(sql: &str) -> bool {
    vecraft_planner::parse::depth_of(sql) > SHALLOW_DEPTH
}

/// `future`, polled on a stack of [`DEEP_STACK_BYTES`] when `deep` (as it is otherwise).
pub fn on_stack_for<F: Future>(deep: bool, future: F) -> Either<F, DeepStack<F>> {
    if deep {
        Either::Right(DeepStack(Box::pin(future)))
    } else {
        Either::Left(future)
    }
}

/// A future polled on its own stack.
pub struct DeepStack<F>(Pin<Box<F>>);

impl<F: Future> Future for DeepStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = &mut self.0;
        stacker::grow(DEEP_STACK_BYTES, || future.as_mut().poll(cx))
    }
}
