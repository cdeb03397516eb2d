//! Ranks joining a running job, and membership: who is live now, and the
//! events that tell the parent and the ranks of every join and departure.
//!
//! A join places the new ranks (the next numbers, each with a mailbox and,
//! when the job has a subnet, a NIC on it), announces them, and hands them
//! to the job's driver, which starts their instances like the first ones.
//! It is refused once the job has ended or is ending, for a count of 0, and
//! past [`MAX_RANKS`] ranks in all (ended ones count: numbers are never
//! reused). Joins are serialized with each other and with the driver's end
//! by the job's `joins` lock, so a rank is never handed to a driver that is
//! gone.

use super::MeshError;
use super::job::{Group, Job, MAX_RANKS, RankSlot, Shared};
use super::mailbox::Message;
use crate::runtime::{InstanceId, LoadedModule};
use std::sync::atomic::Ordering;

/// A rank for the driver to start.
#[derive(Debug)]
pub(crate) struct Launch {
    /// Its number.
    pub(crate) rank: u32,
    /// Its module's name.
    pub(crate) name: String,
    /// Its module.
    pub(crate) module: LoadedModule,
    /// Its arguments, when not the job's.
    pub(crate) args: Option<Vec<String>>,
}

impl Shared {
    /// Places `count` new ranks of module `name`: numbers, mailboxes, NICs.
    /// With `announce`, the parent and the live ranks hear of each. The
    /// caller holds the `joins` lock (or is starting the job).
    pub(super) fn place(
        &self,
        name: &str,
        count: u32,
        announce: bool,
    ) -> Result<Vec<u32>, MeshError> {
        let first = self.size();
        if count == 0 {
            return Err(MeshError::Invalid("add at least one rank".into()));
        }
        if count > MAX_RANKS - first {
            return Err(MeshError::Invalid(format!(
                "a mesh has at most {MAX_RANKS} ranks: this one has had {first}, {count} more are too many"
            )));
        }
        let instances: Vec<InstanceId> = (0..count).map(|_| InstanceId::new()).collect();
        let addrs = match &mut *self.net.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(net) => {
                let names: Vec<String> = instances.iter().map(ToString::to_string).collect();
                let addrs = net
                    .add(&names)
                    .map_err(|e| MeshError::Invalid(format!("the mesh subnet: {e}")))?;
                addrs.into_iter().map(Some).collect()
            }
            None => vec![None; count as usize],
        };
        for (i, (instance, addr)) in instances.into_iter().zip(addrs).enumerate() {
            let slot = RankSlot::new(name.to_owned(), instance, self.bounds, addr);
            let _ = self.ranks[first as usize + i].set(slot);
        }
        self.count.store(first + count, Ordering::Release);
        let ranks: Vec<u32> = (first..first + count).collect();
        let epoch = self.collectives.join(ranks.iter().copied());
        if announce {
            for &rank in &ranks {
                self.announce(rank, true, epoch - u64::from(first + count - 1 - rank));
            }
        }
        Ok(ranks)
    }

    /// Tells the parent and every other live rank that `rank` joined or
    /// left, at `epoch`.
    pub(super) fn announce(&self, rank: u32, joined: bool, epoch: u64) {
        let event = Message::membership(rank, joined, epoch);
        if self.has_parent {
            self.parent_box.push_event(event.clone());
        }
        for (other, slot) in self.all_ranks().enumerate() {
            if other as u32 != rank {
                slot.mailbox.push_event(event.clone());
            }
        }
    }

    /// The ranks live now, ascending, and the membership epoch.
    pub(crate) fn members(&self) -> (Vec<u32>, u64) {
        self.collectives.members()
    }

    /// Removes the mesh subnet, if there is one (once).
    pub(super) fn remove_net(&self) {
        let net = self.net.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(net) = net {
            net.remove();
        }
    }
}

impl Job {
    /// Starts `group.ranks` more ranks of `group.module` in the running
    /// job, with `args` (else the job's); returns their numbers.
    pub fn add_ranks(
        &self,
        group: Group,
        args: Option<Vec<String>>,
    ) -> Result<Vec<u32>, MeshError> {
        let shared = &self.shared;
        let joins = shared.joins.lock().unwrap_or_else(|p| p.into_inner());
        let Some(driver) = joins.as_ref() else {
            return Err(MeshError::Ended);
        };
        if shared.stopping().is_some() {
            return Err(MeshError::Ended);
        }
        let ranks = shared.place(&group.name, group.ranks, true)?;
        for &rank in &ranks {
            let launch = Launch {
                rank,
                name: group.name.clone(),
                module: group.module.clone(),
                args: args.clone(),
            };
            // The driver holds the receiver until it clears `joins`, which
            // it does under this lock.
            driver
                .send(launch)
                .expect("the driver takes joins until it clears them");
        }
        Ok(ranks)
    }

    /// The ranks live now, ascending, and the membership epoch (it grows by
    /// one for every rank that joins or leaves).
    pub fn members(&self) -> (Vec<u32>, u64) {
        self.shared.members()
    }
}
