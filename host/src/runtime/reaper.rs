//! Where ended instances are torn down: a thread of the runtime's own.
//!
//! Dropping a store returns its slot to the pooling allocator, which resets
//! the slot for the next instance: it scans which pages the instance wrote,
//! zeroes those it keeps resident and returns the others to the kernel.
//! That costs time in proportion to the memory the instance touched (for an
//! instance that handled 1 MiB, more than copying the megabyte did), and
//! none of it is the caller's business: the response is ready, or the next
//! chain step has its input. So every store of a runtime ends in a
//! [`Owned`], whose drop hands the store to the reaper thread, unless
//! [`BACKLOG`] stores are waiting there already: then the caller drops it.
//!
//! What a store holds that others can see goes at once, on the caller's
//! thread: its sockets and interface records (`net`) and its place in a
//! mesh, so a peer never sees an instance linger. Only the memory's reset
//! is deferred.
//!
//! A slot is busy until the reaper has dropped its store, so a pool that is
//! full now may not be a moment later: [`Reaper::wait_until`] lets an
//! instantiation wait briefly for a slot to come back (see
//! `Runtime::prepare`).

use super::State;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tokio::sync::Notify;
use wasmtime::{Memory, Store};

/// A store to drop, and the tokio runtime it was used on (entered while
/// dropping, for whatever of WASI's needs one to let go).
type Retired = (Store<State>, Option<tokio::runtime::Handle>);

/// Stores whose memory is smaller than this are dropped on the caller's
/// thread: resetting a slot that little was written to costs a few
/// microseconds, less than waking the reaper does, and a reset running on
/// another core while the caller instantiates its next instance slows that
/// instance down (the two contend for the process's page tables, and the
/// reset's protection changes interrupt the other core to flush its TLB).
/// Measured (`cargo bench -p weft-host --bench invoke`): an empty
/// invocation took 9.4 µs with every store dropped in place and 19–21 µs
/// with every store sent to the reaper. Past this size the reset costs more
/// than all of that, and is best kept off the caller's path: a 1 MiB chain
/// hop took 118–160 µs with the reset on its path and 53–86 µs without.
pub(crate) const REAP_FROM: usize = 2 << 20;

/// Stores waiting for the reaper at most; past it, a store is dropped on
/// the caller's thread. One thread resets slots more slowly than several
/// workers can end instances, and a queue left to grow would hold every
/// slot of the pool: past this, the callers pay for their own resets again
/// and so slow to the pace the pool can bear.
pub(crate) const BACKLOG: usize = 32;

/// How long [`Reaper::wait_until`] waits at most while stores are queued
/// for the reaper: a reset takes milliseconds, but the thread may not get a
/// core for a while on a loaded machine, and a slot on its way back is not
/// a reason to refuse an instance.
const RETURNING: Duration = Duration::from_secs(5);

/// The runtime's reaper: a queue to its thread.
pub(crate) struct Reaper {
    queue: mpsc::Sender<Retired>,
    /// Stores queued and not yet dropped.
    pending: Arc<AtomicUsize>,
    /// Notified after each store the thread drops: a slot is free.
    freed: Arc<Notify>,
}

impl Reaper {
    /// Starts the thread; it ends when the reaper and every store handed to
    /// it are gone.
    pub(crate) fn spawn() -> std::io::Result<Arc<Reaper>> {
        let (queue, stores) = mpsc::channel::<Retired>();
        let freed = Arc::new(Notify::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let (notify, count) = (freed.clone(), pending.clone());
        std::thread::Builder::new()
            .name("weft-reaper".into())
            .spawn(move || {
                for (store, tokio) in stores {
                    let entered = tokio.as_ref().map(tokio::runtime::Handle::enter);
                    drop(store);
                    drop(entered);
                    count.fetch_sub(1, Ordering::AcqRel);
                    notify.notify_waiters();
                }
            })?;
        Ok(Arc::new(Reaper {
            queue,
            pending,
            freed,
        }))
    }

    /// Takes `store` to drop on the reaper thread, after dropping what
    /// others can see of it here; drops it here when its `memory` is
    /// smaller than [`REAP_FROM`].
    fn retire(&self, mut store: Store<State>, memory: Option<Memory>) {
        if memory.is_none_or(|memory| memory.data_size(&store) < REAP_FROM) {
            drop(store);
            return;
        }
        let state = store.data_mut();
        drop(state.net.take());
        drop(state.mesh.take());
        if self.pending.fetch_add(1, Ordering::AcqRel) >= BACKLOG {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            drop(store);
            self.freed.notify_waiters();
            return;
        }
        let tokio = tokio::runtime::Handle::try_current().ok();
        if let Err(mpsc::SendError((store, _))) = self.queue.send((store, tokio)) {
            // The thread is gone (it only ends with the runtime, or if a
            // drop panicked): drop it here.
            self.pending.fetch_sub(1, Ordering::AcqRel);
            drop(store);
        }
    }

    /// Waits until `ready()` holds, looking again each time a store is
    /// dropped: for at most `grace`, or [`RETURNING`] while stores are
    /// queued here (each gives its slot back soon, however busy the
    /// machine keeps this thread).
    pub(crate) async fn wait_until(&self, ready: impl Fn() -> bool, grace: Duration) {
        let started = tokio::time::Instant::now();
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if ready() {
                return;
            }
            let queued = self.pending.load(Ordering::Acquire) > 0;
            let until = started + if queued { RETURNING.max(grace) } else { grace };
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return;
            }
        }
    }
}

/// A store that goes to the reaper when dropped, if its memory is large.
pub(crate) struct Owned {
    store: Option<Store<State>>,
    memory: Option<Memory>,
    reaper: Arc<Reaper>,
}

impl Owned {
    pub(crate) fn new(store: Store<State>, reaper: Arc<Reaper>) -> Owned {
        Owned {
            store: Some(store),
            memory: None,
            reaper,
        }
    }

    /// The instance's memory, whose size decides where the store is
    /// dropped.
    pub(crate) fn set_memory(&mut self, memory: Option<Memory>) {
        self.memory = memory;
    }

    /// The instance's memory, once it is instantiated.
    pub(crate) fn memory(&self) -> Option<Memory> {
        self.memory
    }
}

impl Deref for Owned {
    type Target = Store<State>;

    fn deref(&self) -> &Store<State> {
        self.store.as_ref().expect("present until dropped")
    }
}

impl DerefMut for Owned {
    fn deref_mut(&mut self) -> &mut Store<State> {
        self.store.as_mut().expect("present until dropped")
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.reaper.retire(store, self.memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::{Invocation, Runtime, RuntimeConfig};

    /// Grows its memory to 3 MiB and writes a byte on every page: a slot
    /// whose reset goes to the reaper.
    const LARGE: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "_start")
        (local $at i32)
        (drop (memory.grow (i32.const 47)))
        (loop $touch
          (i32.store8 (local.get $at) (i32.const 1))
          (local.set $at (i32.add (local.get $at) (i32.const 4096)))
          (br_if $touch (i32.lt_u (local.get $at) (i32.const 3145728))))))"#;

    #[test]
    fn slots_reset_by_the_reaper_come_back_to_the_next_instantiations() {
        // One slot, fifty instances one after the other: each finds the
        // last one's slot on its way back from the reaper, at worst, and
        // waits for it rather than fail.
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let module = runtime.load(LARGE.as_bytes()).unwrap();
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async {
            for _ in 0..50 {
                let outcome = runtime
                    .invoke(&module, Invocation::new("large", ""))
                    .await
                    .unwrap();
                assert_eq!(outcome.exit_code, 0);
            }
        });
    }
}
