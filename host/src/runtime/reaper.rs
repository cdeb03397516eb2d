//! Where ended instances are torn down: a thread of the runtime's own.
//!
//! Dropping a store returns its slot to the pooling allocator, which resets
//! the slot for the next instance: it scans which pages the instance wrote,
//! zeroes those it keeps resident and returns the others to the kernel.
//! That costs time in proportion to the memory the instance touched (for an
//! instance that handled 1 MiB, more than copying the megabyte did), and
//! none of it is the caller's business: the response is ready, or the next
//! chain step has its input. So every store of a runtime ends in a
//! [`Owned`], whose drop hands the store to the reaper thread.
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
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tokio::sync::Notify;
use wasmtime::Store;

/// A store to drop, and the tokio runtime it was used on (entered while
/// dropping, for whatever of WASI's needs one to let go).
type Retired = (Store<State>, Option<tokio::runtime::Handle>);

/// The runtime's reaper: a queue to its thread.
pub(crate) struct Reaper {
    queue: mpsc::Sender<Retired>,
    /// Notified after each store the thread drops: a slot is free.
    freed: Arc<Notify>,
}

impl Reaper {
    /// Starts the thread; it ends when the reaper and every store handed to
    /// it are gone.
    pub(crate) fn spawn() -> std::io::Result<Arc<Reaper>> {
        let (queue, stores) = mpsc::channel::<Retired>();
        let freed = Arc::new(Notify::new());
        let notify = freed.clone();
        std::thread::Builder::new()
            .name("weft-reaper".into())
            .spawn(move || {
                for (store, tokio) in stores {
                    let entered = tokio.as_ref().map(tokio::runtime::Handle::enter);
                    drop(store);
                    drop(entered);
                    notify.notify_waiters();
                }
            })?;
        Ok(Arc::new(Reaper { queue, freed }))
    }

    /// Takes `store` to drop on the reaper thread, after dropping what
    /// others can see of it here.
    fn retire(&self, mut store: Store<State>) {
        let state = store.data_mut();
        drop(state.net.take());
        drop(state.mesh.take());
        let tokio = tokio::runtime::Handle::try_current().ok();
        if let Err(mpsc::SendError(store)) = self.queue.send((store, tokio)) {
            // The thread is gone (it only ends with the runtime, or if a
            // drop panicked): drop it here.
            drop(store);
        }
    }

    /// Waits until `ready()` holds, looking again each time a store is
    /// dropped, for at most `grace`; returns whether it holds.
    pub(crate) async fn wait_until(&self, ready: impl Fn() -> bool, grace: Duration) -> bool {
        let until = tokio::time::Instant::now() + grace;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if ready() {
                return true;
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return ready();
            }
        }
    }
}

/// A store that goes to the reaper when dropped.
pub(crate) struct Owned {
    store: Option<Store<State>>,
    reaper: Arc<Reaper>,
}

impl Owned {
    pub(crate) fn new(store: Store<State>, reaper: Arc<Reaper>) -> Owned {
        Owned {
            store: Some(store),
            reaper,
        }
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
            self.reaper.retire(store);
        }
    }
}
