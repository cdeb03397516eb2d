//! How a mailbox's waiters park and are woken, and how long they wait.

use crate::mesh::MeshError;
use crate::network::Wait;
use crate::runtime::Cancel;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::Instant;
use tokio::sync::Notify;

/// Wakes whoever is parked on `notify`, if anyone is: `parked` counts
/// them. The caller has just published a change; a waiter listens, then
/// counts itself, then looks. With a fence on both sides, either this
/// sees the count (and the waiter is listening by then), or the waiter's
/// look sees the change.
pub(super) fn wake(notify: &Notify, parked: &AtomicUsize) {
    fence(Ordering::SeqCst);
    if parked.load(Ordering::Relaxed) > 0 {
        notify.notify_waiters();
    }
}

/// Counts a waiter as parked while it lives.
pub(super) struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    pub(super) fn on(count: &'a AtomicUsize) -> Parked<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `attempt` under the timeout of `wait` (counted from `started`),
/// ending early when `cancel` fires.
pub(super) async fn waiting<T>(
    attempt: impl Future<Output = Result<T, MeshError>>,
    wait: Wait,
    started: Instant,
    cancel: &Cancel,
) -> Result<T, MeshError> {
    let bounded = async {
        match wait {
            Wait::For(limit) => {
                let deadline = tokio::time::Instant::from_std(started + limit);
                tokio::time::timeout_at(deadline, attempt)
                    .await
                    .unwrap_or(Err(MeshError::TimedOut))
            }
            Wait::No | Wait::Forever => attempt.await,
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(MeshError::Cancelled),
        result = bounded => result,
    }
}
