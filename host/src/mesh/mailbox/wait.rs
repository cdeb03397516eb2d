//! How a mailbox's waiters park and are woken, and how long they wait.

use crate::mesh::MeshError;
use crate::network::Wait;
use crate::runtime::Cancel;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence, fence};
use std::time::Instant;
use tokio::sync::Notify;

/// Wakes whoever is parked on `notify`, if anyone is: `parked` counts
/// them. The caller has just published a change; a waiter listens, then
/// counts itself, then looks. Each side orders a store before a load, so
/// either this sees the count (and the waiter is listening by then), or
/// the waiter's look sees the change. With `light` set (see
/// [`Light`]), the waiter's process-wide barrier orders both sides, and
/// this, the path of every message, needs no fence of its own.
pub(super) fn wake(notify: &Notify, parked: &AtomicUsize, light: &Light) {
    if light.on() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
    if parked.load(Ordering::Relaxed) > 0 {
        notify.notify_waiters();
    }
}

/// Counts a waiter as parked while it lives.
pub(super) struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    /// Counts a waiter; before each look it then calls
    /// [`Light::before_look`].
    pub(super) fn on(count: &'a AtomicUsize) -> Parked<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Parked(count)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a mailbox's wakers skip their fence, leaving the ordering to
/// its waiters' process-wide barrier (Linux `membarrier`, about 1 µs: it
/// interrupts every other core running the process). A waiter parks
/// rarely (a rank on a thread of its own polls for 50 µs first) and a
/// message is sent all the time: the fence cost a round trip 5–10%. Off
/// for a mailbox whose owner runs as a task (it parks at once, and would
/// pay the barrier on every wait), and where the kernel has no
/// `membarrier`. A rank on its own thread parks at once too while ranks
/// outnumber the cores (a job started later runs its ranks as tasks); it
/// then pays the barrier on each wait, beside the tens of microseconds a
/// parked thread's wake-up takes.
///
/// Turned on once, before the owner starts, and every waiter woken then:
/// a waiter reads it after it starts listening and before each look, so a
/// look that read it off (and fenced, relying on the waker's fence) is
/// followed by another that reads it on.
#[derive(Debug, Default)]
pub(super) struct Light(AtomicBool);

impl Light {
    fn on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Turns it on if the process can issue the barrier; whether it did.
    /// The caller then wakes every waiter: one that read it off before
    /// listening looks again with it on.
    pub(super) fn turn_on(&self) -> bool {
        let available = barrier_available();
        if available {
            self.0.store(true, Ordering::Release);
        }
        available
    }

    /// What a parked waiter does between counting itself (or waking) and
    /// looking: orders both sides (see [`wake`]).
    pub(super) fn before_look(&self) {
        // Registered, the barrier cannot fail; if it did, a fence is the
        // best this side can do.
        if !(self.on() && process_barrier()) {
            fence(Ordering::SeqCst);
        }
    }
}

/// Whether `membarrier`'s private expedited barrier is registered for the
/// process (registered on the first ask).
fn barrier_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(register_barrier)
}

#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // a system call with no pointers.
fn register_barrier() -> bool {
    // SAFETY: `membarrier` takes a command and flags, no memory.
    let registered = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    registered == 0
}

#[cfg(not(target_os = "linux"))]
fn register_barrier() -> bool {
    false
}

/// Makes every running thread of the process pass a full fence: whether
/// it could (else the caller fences itself).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // a system call with no pointers.
fn process_barrier() -> bool {
    // SAFETY: as in `register_barrier`.
    let done =
        unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    done == 0
}

#[cfg(not(target_os = "linux"))]
fn process_barrier() -> bool {
    false
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
