//! Where a rank runs, and how it waits: like an MPI rank, on an OS thread
//! of its own, busy-polling while it has a core to itself.
//!
//! A job whose ranks (and controller) [`fit`](fits) the cores, counting
//! the ranks already running in the process, runs each on a dedicated
//! thread, `weft-rank-N` (`weft-parent` for a controller), that drives the
//! instance with [`Handle::block_on`] on the runtime's handle: the
//! instance's future is polled on that thread, while what it registers
//! (I/O on the mesh subnet, timers, deadlines, the [`Cancel`] token's
//! waker) and what it spawns stay on the runtime. A stopped job reaches a
//! rank there as it would a task: a rank running wasm stops at its next
//! epoch tick, one waiting in a host call is woken at once. The thread
//! ends when the instance does; the driver joins it before it reports the
//! rank ended, so a job leaves no thread behind. Each such thread is pinned
//! to the allowed CPU with the fewest rank threads ([`Pinned`]). A job that does not fit
//! runs its ranks as tasks on the runtime ([`on_runtime`]), as before
//! threads: there, two ranks on one worker hand off without an OS
//! wake-up, which oversubscribed threads would pay on every message.
//! Ranks that join a running job are placed one by one the same way.
//!
//! Waiting (a receive with nothing to take, a collective not yet
//! complete, a send to a full mailbox) first looks again for a bounded
//! time, per [`idle`]:
//!
//! - [`Idle::Busy`]: on a rank's own thread while the ranks running (over
//!   every job in the process) are no more than the machine's cores: a
//!   tight loop on an atomic counter with [`std::hint::spin_loop`], for
//!   up to [`BUSY`] (yielding the core between looks after [`TIGHT`], in
//!   case another process took the other cores and the peer waits for
//!   this one). Nothing else of ours wants that core, and parking would
//!   cost a futex wake-up (tens of µs on a VM) per message.
//! - [`Idle::Park`]: on a rank's own thread when oversubscribed: park at
//!   once, and leave the cores to the ranks that have work (Open MPI's
//!   `mpi_yield_when_idle` when oversubscribed).
//! - [`Idle::Yield`]: an instance polled on a runtime worker (the code
//!   that calls the mesh from a task, such as an external parent's link,
//!   or tests): a short spin that yields to the executor between looks,
//!   so a peer on the same worker gets to run.
//!
//! The numbers behind it are in `docs/abi.md` (`weft:mesh`, "Where ranks
//! run") and come from `cargo bench -p weft-host --bench mesh`.

use crate::runtime::Cancel;
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How long a rank with a core to itself polls before it parks: about
/// what a park and wake-up cost, so a wait that ends up parking costs at
/// most twice what parking at once would.
pub const BUSY: Duration = Duration::from_micros(50);

/// How long a busy poll loops without yielding the core: a peer on
/// another core answers a small message within this.
pub const TIGHT: Duration = Duration::from_micros(5);

/// How long an instance on a runtime worker keeps looking (yielding
/// between looks) before it parks.
pub const YIELDING: Duration = Duration::from_micros(20);

/// Ranks (and controllers) running now, over every job.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is a rank's own.
    static OWN_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The machine's cores, as the process may use them.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Ranks running now, over every job in the process.
pub fn running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

/// How a waiting rank spends the time before it parks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Poll in a tight loop for up to [`BUSY`].
    Busy,
    /// Park at once.
    Park,
    /// Look again between turns of the executor for up to [`YIELDING`].
    Yield,
}

/// The policy for a wait starting now on this thread.
pub fn idle() -> Idle {
    if !OWN_THREAD.with(Cell::get) {
        Idle::Yield
    } else if running() <= cores() {
        Idle::Busy
    } else {
        Idle::Park
    }
}

/// Calls `look` per the [`idle`] policy until it gives an answer, the
/// time is up, or `cancel` fires; `None` means: park now. `look` should
/// be cheap when nothing has changed (one atomic load).
pub async fn before_parking<T>(mut look: impl FnMut() -> Option<T>, cancel: &Cancel) -> Option<T> {
    match idle() {
        Idle::Park => None,
        Idle::Busy => busy_poll(look, BUSY, || cancel.is_cancelled()),
        Idle::Yield => {
            let started = Instant::now();
            loop {
                if let Some(answer) = look() {
                    return Some(answer);
                }
                if cancel.is_cancelled() || started.elapsed() >= YIELDING {
                    return None;
                }
                requeue().await;
            }
        }
    }
}

/// Calls `look` in a tight loop for up to [`TIGHT`] when [`idle`] says
/// [`Idle::Busy`] (at once `None` otherwise): the wait of a call that may
/// not suspend the instance, before it falls back to one that can.
pub fn spin<T>(look: impl FnMut() -> Option<T>) -> Option<T> {
    if idle() != Idle::Busy {
        return None;
    }
    busy_poll(look, TIGHT, || false)
}

/// Calls `look` in a loop until it gives an answer, `limit` has passed or
/// `stop()` says so (`None` then). The time counts from the end of the
/// first 64 looks: most waits end within them, and need not read the
/// clock at all (a read costs tens of nanoseconds on a VM, a tenth of a
/// small message's round trip).
fn busy_poll<T>(
    mut look: impl FnMut() -> Option<T>,
    limit: Duration,
    stop: impl Fn() -> bool,
) -> Option<T> {
    let mut started = None;
    loop {
        // The clock is read once per 64 looks (a look that finds nothing
        // is a load and a compare).
        for _ in 0..64 {
            if let Some(answer) = look() {
                return Some(answer);
            }
            std::hint::spin_loop();
        }
        let waited = started.get_or_insert_with(Instant::now).elapsed();
        if stop() || waited >= limit {
            return None;
        }
        // Past the first microseconds, offer the core to another thread
        // between looks: when something else took the other cores, the
        // peer may be waiting for this one (with nothing else to run, this
        // returns at once).
        if waited >= TIGHT {
            std::thread::yield_now();
        }
    }
}

/// Lets the executor run other tasks once, then continues: the task wakes
/// itself and returns `Pending`, so tokio puts it at the back of its
/// worker's run queue. Unlike `tokio::task::yield_now`, which holds the
/// task back until the worker next polls its I/O driver (an `epoll_wait`
/// syscall and clock reads per look: a large share of a spinning
/// receiver's time in `perf`), this only goes round the run queue; the
/// driver is still polled every few dozen tasks, as tokio always does.
async fn requeue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Counts a running rank while it lives.
struct Running;

impl Running {
    fn enter() -> Running {
        RUNNING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether `ranks` more ranks each get a thread of their own: when, with
/// them, the ranks running are no more than the cores. A job that does not
/// fit runs its ranks as tasks on the runtime instead ([`on_runtime`]),
/// where a hand-off between two ranks on one worker costs no OS wake-up:
/// measured with 16 ranks on 2 cores, a barrier took 11 µs as tasks and
/// 70–80 µs as parked threads.
pub fn fits(ranks: usize) -> bool {
    running() + ranks <= cores()
}

/// Runs `future` (a rank's instance) as it is, counted as a running rank.
pub async fn on_runtime<F: Future>(future: F) -> F::Output {
    let _running = Running::enter();
    future.await
}

/// Runs `future` to completion on a new thread named `name`, polled there
/// with [`Handle::block_on`] on `runtime`; resolves to its output once the
/// thread has ended. Panics (in the awaiting task) when the thread did.
pub fn on_own_thread<F>(
    name: String,
    runtime: Handle,
    future: F,
) -> std::io::Result<impl Future<Output = F::Output> + Send + 'static>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let output = {
            let _pinned = Pinned::to_least_used_cpu();
            let _running = Running::enter();
            OWN_THREAD.with(|own| own.set(true));
            runtime.block_on(future)
        };
        drop(runtime);
        // The thread's last act: what is left to do is return.
        let _ = done.send(output);
    })?;
    Ok(async move {
        let output = result.await;
        // It has sent its output and returns: joining takes no time.
        let joined = thread.join();
        match (output, joined) {
            (Ok(output), _) => output,
            (Err(_), Err(panic)) => std::panic::resume_unwind(panic),
            (Err(_), Ok(())) => unreachable!("a rank's thread ended without an answer"),
        }
    })
}

/// The CPUs this process may run on, and how many rank threads are pinned
/// to each.
static PINS: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

/// A rank thread pinned to one CPU, as MPI pins its ranks: a rank that
/// busy-polls must not share a core with its peer, and the scheduler does
/// not know that on its own (unpinned, the two threads of a ping-pong
/// sometimes share a core for a while, and a 1 MiB stream then ran at a
/// tenth of its speed). Each thread goes to the allowed CPU with the fewest
/// rank threads; the pin is given back when the thread's rank ends.
struct Pinned(usize);

impl Pinned {
    /// Pins the calling thread; `None` (and the thread left as it is) when
    /// the allowed CPUs cannot be read or set.
    fn to_least_used_cpu() -> Option<Pinned> {
        let mut pins = PINS.lock().unwrap_or_else(|p| p.into_inner());
        if pins.is_empty() {
            *pins = allowed_cpus()?.into_iter().map(|cpu| (cpu, 0)).collect();
        }
        let (cpu, count) = pins.iter_mut().min_by_key(|(_, count)| *count)?;
        pin_to(*cpu).then(|| {
            *count += 1;
            Pinned(*cpu)
        })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut pins = PINS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, count)) = pins.iter_mut().find(|(cpu, _)| *cpu == self.0) {
            *count -= 1;
        }
    }
}

/// The CPUs the calling thread may run on.
#[allow(unsafe_code)] // sched_getaffinity into a set this function owns.
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; the call writes at
    // most `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET reads it
    // within bounds (indices below CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect();
        (!cpus.is_empty()).then_some(cpus)
    }
}

/// Pins the calling thread to `cpu`; whether it worked.
#[allow(unsafe_code)] // sched_setaffinity from a set this function owns.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: as in `allowed_cpus`; `cpu` came from the allowed set, so it
    // is below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
