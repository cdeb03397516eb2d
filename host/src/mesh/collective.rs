//! Collectives: barrier, broadcast, reduce/allreduce, gather and scatter,
//! computed by the host.
//!
//! Ranks join and leave while a job runs, so a round is over a membership
//! fixed when the round *opens* (its first call): the ranks live at that
//! moment. A rank started later takes part from the first round opened
//! after it started (its call waits for the open round to end, then opens
//! or joins the next); a rank that has left takes part in no later round.
//! The round completes when all its members have joined: the last to
//! arrive checks that they agree (same operation, root, lengths, types),
//! computes the result once, and wakes the others, who copy their part of
//! it into their own memory. Reductions combine contributions in rank
//! order, so a floating-point result is the same on every run whatever
//! order the ranks arrive in; gather and scatter lay pieces out in rank
//! order over the round's members.
//!
//! When a member of the open round leaves, that round fails with
//! [`MeshError::PeerGone`] for all its members. A rank that *fails* (a
//! trap, a limit, a stop) breaks the collectives for good: every later
//! round fails too, as a lost contribution must not go unnoticed. A rank
//! that *exits* leaves cleanly: later rounds are among the others.

use super::MeshError;
use super::placement;
use crate::runtime::Cancel;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use weft_abi::mesh::{op, ty};

/// A reduction operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sum; integers wrap.
    Sum,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl Op {
    /// From the ABI's `op`.
    pub fn from_abi(raw: i32) -> Option<Op> {
        Some(match raw {
            op::SUM => Op::Sum,
            op::MIN => Op::Min,
            op::MAX => Op::Max,
            _ => return None,
        })
    }
}

/// An element type of a reduction: 8 bytes, little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `f64`.
    F64,
    /// `i64`.
    I64,
    /// `u64`.
    U64,
}

impl Type {
    /// From the ABI's `ty`.
    pub fn from_abi(raw: i32) -> Option<Type> {
        Some(match raw {
            ty::F64 => Type::F64,
            ty::I64 => Type::I64,
            ty::U64 => Type::U64,
            _ => return None,
        })
    }
}

/// One rank's part in a collective.
#[derive(Clone, Debug)]
pub enum Call {
    /// Wait for everyone.
    Barrier,
    /// `root`'s bytes to everyone; `data` is given by the root only.
    Broadcast {
        root: u32,
        len: usize,
        data: Option<Bytes>,
    },
    /// Combine `data` (whole elements) with `op`; the result goes to `root`,
    /// or to everyone when `root` is `None`.
    Reduce {
        root: Option<u32>,
        op: Op,
        ty: Type,
        data: Bytes,
    },
    /// Everyone's `data` (equal lengths), in rank order, to `root`, whose
    /// buffer (`out`, given by the root only) must hold them all.
    Gather {
        root: u32,
        data: Bytes,
        out: Option<usize>,
    },
    /// `root`'s `data` cut into one piece of `piece` bytes per member, the
    /// `i`-th piece to the `i`-th member in rank order.
    Scatter {
        root: u32,
        piece: usize,
        data: Option<Bytes>,
    },
}

/// A completed round.
#[derive(Debug)]
enum Outcome {
    Barrier,
    /// The bytes every non-root rank gets.
    Broadcast {
        root: u32,
        data: Bytes,
    },
    Reduce {
        root: Option<u32>,
        result: Bytes,
    },
    Gather {
        root: u32,
        all: Bytes,
    },
    Scatter {
        piece: usize,
        all: Bytes,
        members: Arc<[u32]>,
    },
}

/// The result of a round for one rank: the bytes to write over its
/// buffer, if any.
#[derive(Debug)]
pub struct Done(Arc<Result<Outcome, MeshError>>);

impl Done {
    /// What rank `rank` copies into its buffer (`None`: nothing).
    pub fn for_rank(&self, rank: u32) -> Result<Option<Bytes>, MeshError> {
        let outcome = self.0.as_ref().as_ref().map_err(|e| e.clone())?;
        Ok(match outcome {
            Outcome::Barrier => None,
            Outcome::Broadcast { root, data } => (*root != rank).then(|| data.clone()),
            Outcome::Reduce { root, result } => {
                (root.is_none() || *root == Some(rank)).then(|| result.clone())
            }
            Outcome::Gather { root, all } => (*root == rank).then(|| all.clone()),
            Outcome::Scatter {
                piece,
                all,
                members,
            } => {
                let index = members
                    .binary_search(&rank)
                    .map_err(|_| MeshError::PeerGone)?;
                let start = index * piece;
                Some(all.slice(start..start + piece))
            }
        })
    }
}

/// A finished round's number and result, shared by its ranks.
type Finished = (u64, Arc<Result<Outcome, MeshError>>);

#[derive(Debug)]
struct Round {
    number: u64,
    /// The open round's members, ascending, fixed by its first call.
    members: Option<Arc<[u32]>>,
    /// Their calls, by position in `members`.
    calls: Vec<Option<Call>>,
    entered: usize,
    /// The results of the last two rounds, by round number modulo 2: a
    /// rank can be one round behind the others (woken, not yet read).
    recent: [Option<Finished>; 2],
    /// The ranks live now.
    live: BTreeSet<u32>,
    /// A rank failed: every round from now on fails.
    broken: bool,
    /// Members of a round that failed before they called into it: their
    /// next call is that round's, and fails too.
    owed: BTreeSet<u32>,
    /// Grows by one for every rank that joins or leaves.
    epoch: u64,
}

/// The collectives of one job.
#[derive(Debug)]
pub struct Collectives {
    round: Mutex<Round>,
    done: Notify,
    /// The rounds ended so far (`Round::number`, readable without the
    /// lock): a rank polling for its round's end looks again only when
    /// this moves.
    ended: AtomicU64,
}

impl Collectives {
    /// Collectives among ranks `0..size` (more can [`join`](Self::join)).
    pub fn new(size: usize) -> Collectives {
        Collectives {
            round: Mutex::new(Round {
                number: 0,
                members: None,
                calls: Vec::new(),
                entered: 0,
                recent: [None, None],
                live: (0..size as u32).collect(),
                broken: false,
                owed: BTreeSet::new(),
                epoch: 0,
            }),
            done: Notify::new(),
            ended: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the first round open to `rank` and waits for it to complete.
    pub async fn enter(&self, rank: u32, call: Call, cancel: &Cancel) -> Result<Done, MeshError> {
        let number = loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut round = self.lock();
                if round.owed.remove(&rank) || round.broken || !round.live.contains(&rank) {
                    return Err(MeshError::PeerGone);
                }
                let members = match &round.members {
                    Some(members) => members.clone(),
                    None => {
                        let members: Arc<[u32]> = round.live.iter().copied().collect();
                        round.calls = vec![None; members.len()];
                        round.members = Some(members.clone());
                        members
                    }
                };
                // Not a member (started after the round opened): wait for
                // it to end, then take part in the next.
                if let Ok(index) = members.binary_search(&rank) {
                    if round.calls[index].is_some() {
                        return Err(MeshError::Mismatch);
                    }
                    round.calls[index] = Some(call);
                    round.entered += 1;
                    if round.entered == members.len() {
                        let calls: Vec<Call> =
                            round.calls.iter_mut().filter_map(Option::take).collect();
                        let result = Arc::new(complete(&calls, &members));
                        self.finish(&mut round, result.clone());
                        drop(round);
                        self.done.notify_waiters();
                        return Ok(Done(result));
                    }
                    break round.number;
                }
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(MeshError::Cancelled),
                () = notified => {}
            }
        };
        // The round's result, once it has ended.
        let ended = || {
            let round = self.lock();
            (round.number > number).then(|| match &round.recent[(number % 2) as usize] {
                Some((done, result)) if *done == number => Ok(Done(result.clone())),
                _ => Err(MeshError::PeerGone),
            })
        };
        // Poll first (see `placement`): the others are often microseconds
        // away.
        let polled = placement::before_parking(
            || {
                if self.ended.load(Ordering::Acquire) > number {
                    ended()
                } else {
                    None
                }
            },
            cancel,
        )
        .await;
        if let Some(result) = polled {
            return result;
        }
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = ended() {
                return result;
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(MeshError::Cancelled),
                () = notified => {}
            }
        }
    }

    fn finish(&self, round: &mut Round, result: Arc<Result<Outcome, MeshError>>) {
        let slot = (round.number % 2) as usize;
        round.recent[slot] = Some((round.number, result));
        round.number += 1;
        self.ended.store(round.number, Ordering::Release);
        round.entered = 0;
        round.members = None;
        round.calls.clear();
    }

    /// Ranks started: they take part from the next round that opens.
    /// Returns the new epoch.
    pub fn join(&self, ranks: impl IntoIterator<Item = u32>) -> u64 {
        let mut round = self.lock();
        for rank in ranks {
            round.epoch += u64::from(round.live.insert(rank));
        }
        round.epoch
    }

    /// The ranks live now, ascending, and the epoch.
    pub fn members(&self) -> (Vec<u32>, u64) {
        let round = self.lock();
        (round.live.iter().copied().collect(), round.epoch)
    }

    /// `rank` ended (`failed`: it trapped, hit a limit or was stopped):
    /// the open round fails if it is a member, and after a failure every
    /// later round does. Returns the new epoch.
    pub fn depart(&self, rank: u32, failed: bool) -> u64 {
        let mut round = self.lock();
        round.epoch += u64::from(round.live.remove(&rank));
        let epoch = round.epoch;
        round.broken |= failed;
        let member = round
            .members
            .as_ref()
            .is_some_and(|members| members.binary_search(&rank).is_ok());
        if member || (round.broken && round.members.is_some()) {
            let Round {
                members,
                calls,
                owed,
                live,
                ..
            } = &mut *round;
            let members = members.as_deref().unwrap_or_default();
            for (rank, call) in members.iter().zip(calls.iter()) {
                if call.is_none() && live.contains(rank) {
                    owed.insert(*rank);
                }
            }
            self.finish(&mut round, Arc::new(Err(MeshError::PeerGone)));
        }
        drop(round);
        self.done.notify_waiters();
        epoch
    }
}

/// The position of `root` among `members`.
fn position(members: &[u32], root: u32) -> Result<usize, MeshError> {
    members
        .binary_search(&root)
        .map_err(|_| MeshError::Invalid(format!("root {root} is not a member of this round")))
}

/// Checks that every member (`calls` in the order of `members`) made the
/// same call and computes the result.
fn complete(calls: &[Call], members: &Arc<[u32]>) -> Result<Outcome, MeshError> {
    let size = calls.len();
    match &calls[0] {
        Call::Barrier => {
            agree(calls, |c| matches!(c, Call::Barrier))?;
            Ok(Outcome::Barrier)
        }
        Call::Broadcast { root, len, .. } => {
            let (root, len) = (*root, *len);
            agree(
                calls,
                |c| matches!(c, Call::Broadcast { root: r, len: l, .. } if *r == root && *l == len),
            )?;
            match calls.get(position(members, root)?) {
                Some(Call::Broadcast {
                    data: Some(data), ..
                }) if data.len() == len => Ok(Outcome::Broadcast {
                    root,
                    data: data.clone(),
                }),
                _ => Err(MeshError::Mismatch),
            }
        }
        Call::Reduce {
            root, op, ty, data, ..
        } => {
            let (root, op, ty, len) = (*root, *op, *ty, data.len());
            agree(
                calls,
                |c| matches!(c, Call::Reduce { root: r, op: o, ty: t, data } if *r == root && *o == op && *t == ty && data.len() == len),
            )?;
            if let Some(root) = root {
                position(members, root)?;
            }
            let parts: Vec<&[u8]> = calls
                .iter()
                .map(|c| match c {
                    Call::Reduce { data, .. } => data.as_ref(),
                    _ => unreachable!("checked by `agree`"),
                })
                .collect();
            Ok(Outcome::Reduce {
                root,
                result: reduce(&parts, op, ty).into(),
            })
        }
        Call::Gather { root, data, .. } => {
            let (root, len) = (*root, data.len());
            agree(
                calls,
                |c| matches!(c, Call::Gather { root: r, data, .. } if *r == root && data.len() == len),
            )?;
            match &calls[position(members, root)?] {
                Call::Gather { out: Some(out), .. } if *out == len * size => {}
                _ => return Err(MeshError::Mismatch),
            }
            let mut all = Vec::with_capacity(len * size);
            for call in calls {
                if let Call::Gather { data, .. } = call {
                    all.extend_from_slice(data);
                }
            }
            Ok(Outcome::Gather {
                root,
                all: all.into(),
            })
        }
        Call::Scatter { root, piece, .. } => {
            let (root, piece) = (*root, *piece);
            agree(
                calls,
                |c| matches!(c, Call::Scatter { root: r, piece: p, .. } if *r == root && *p == piece),
            )?;
            match calls.get(position(members, root)?) {
                Some(Call::Scatter {
                    data: Some(data), ..
                }) if data.len() == piece * size => Ok(Outcome::Scatter {
                    piece,
                    all: data.clone(),
                    members: members.clone(),
                }),
                _ => Err(MeshError::Mismatch),
            }
        }
    }
}

fn agree(calls: &[Call], same: impl Fn(&Call) -> bool) -> Result<(), MeshError> {
    if calls.iter().all(same) {
        Ok(())
    } else {
        Err(MeshError::Mismatch)
    }
}

/// Combines equal-length little-endian 8-byte element arrays in order.
pub fn reduce(parts: &[&[u8]], op: Op, ty: Type) -> Vec<u8> {
    let mut out = parts[0].to_vec();
    for part in &parts[1..] {
        for (acc, next) in out.chunks_exact_mut(8).zip(part.chunks_exact(8)) {
            let (a, b): ([u8; 8], [u8; 8]) = (
                acc[..].try_into().expect("8 bytes"),
                next.try_into().expect("8 bytes"),
            );
            let combined = match ty {
                Type::F64 => {
                    let (a, b) = (f64::from_le_bytes(a), f64::from_le_bytes(b));
                    match op {
                        Op::Sum => a + b,
                        Op::Min => a.min(b),
                        Op::Max => a.max(b),
                    }
                    .to_le_bytes()
                }
                Type::I64 => {
                    let (a, b) = (i64::from_le_bytes(a), i64::from_le_bytes(b));
                    match op {
                        Op::Sum => a.wrapping_add(b),
                        Op::Min => a.min(b),
                        Op::Max => a.max(b),
                    }
                    .to_le_bytes()
                }
                Type::U64 => {
                    let (a, b) = (u64::from_le_bytes(a), u64::from_le_bytes(b));
                    match op {
                        Op::Sum => a.wrapping_add(b),
                        Op::Min => a.min(b),
                        Op::Max => a.max(b),
                    }
                    .to_le_bytes()
                }
            };
            acc.copy_from_slice(&combined);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64s(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reduces_in_rank_order() {
        let parts = [f64s(&[1.0, -2.0]), f64s(&[0.5, 7.0]), f64s(&[1e-17, 3.0])];
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        assert_eq!(
            reduce(&parts, Op::Sum, Type::F64),
            f64s(&[(1.0 + 0.5) + 1e-17, 8.0])
        );
        assert_eq!(reduce(&parts, Op::Min, Type::F64), f64s(&[1e-17, -2.0]));
        assert_eq!(reduce(&parts, Op::Max, Type::F64), f64s(&[1.0, 7.0]));
        let ints = [(-5i64).to_le_bytes(), 3i64.to_le_bytes()];
        let ints: Vec<&[u8]> = ints.iter().map(|a| a.as_slice()).collect();
        assert_eq!(
            reduce(&ints, Op::Min, Type::I64),
            (-5i64).to_le_bytes().to_vec()
        );
        let unsigned = [u64::MAX.to_le_bytes(), 2u64.to_le_bytes()];
        let unsigned: Vec<&[u8]> = unsigned.iter().map(|a| a.as_slice()).collect();
        assert_eq!(
            reduce(&unsigned, Op::Sum, Type::U64),
            1u64.to_le_bytes().to_vec()
        );
    }

    #[tokio::test]
    async fn a_round_completes_when_every_rank_has_joined() {
        let collectives = Arc::new(Collectives::new(3));
        let cancel = Cancel::new();
        let mut tasks = Vec::new();
        for rank in [2u32, 0, 1] {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move {
                let call = Call::Gather {
                    root: 1,
                    data: Bytes::from(vec![rank as u8; 2]),
                    out: (rank == 1).then_some(6),
                };
                let done = collectives.enter(rank, call, &cancel).await?;
                done.for_rank(rank)
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        assert_eq!(results[0], None);
        assert_eq!(results[2].as_deref(), Some(&[0, 0, 1, 1, 2, 2][..]));
    }

    #[tokio::test]
    async fn disagreeing_calls_and_a_departed_rank_fail_the_round() {
        let collectives = Arc::new(Collectives::new(2));
        let cancel = Cancel::new();
        let other = {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tokio::spawn(async move { collectives.enter(1, Call::Barrier, &cancel).await })
        };
        let call = Call::Gather {
            root: 0,
            data: Bytes::new(),
            out: Some(0),
        };
        let mine = collectives.enter(0, call, &cancel).await.unwrap();
        assert!(matches!(mine.for_rank(0), Err(MeshError::Mismatch)));
        assert!(matches!(
            other.await.unwrap().unwrap().for_rank(1),
            Err(MeshError::Mismatch)
        ));

        let waiting = {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tokio::spawn(async move { collectives.enter(0, Call::Barrier, &cancel).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        collectives.depart(1, true);
        let result = waiting.await.unwrap().and_then(|done| done.for_rank(0));
        assert!(matches!(result, Err(MeshError::PeerGone)));
        // A failure breaks every later round.
        let later = collectives.enter(0, Call::Barrier, &cancel).await;
        assert!(matches!(later, Err(MeshError::PeerGone)));
    }

    /// Calls `call` as each of `ranks` at once; returns their results.
    async fn round(
        collectives: &Arc<Collectives>,
        ranks: &[u32],
        call: impl Fn(u32) -> Call,
    ) -> Vec<Result<Option<Bytes>, MeshError>> {
        let cancel = Cancel::new();
        let tasks: Vec<_> = ranks
            .iter()
            .map(|&rank| {
                let (collectives, cancel, call) = (collectives.clone(), cancel.clone(), call(rank));
                tokio::spawn(async move {
                    collectives
                        .enter(rank, call, &cancel)
                        .await
                        .and_then(|done| done.for_rank(rank))
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn rounds_are_over_the_ranks_live_when_they_open() {
        let collectives = Arc::new(Collectives::new(2));
        let cancel = Cancel::new();
        let sum = |rank: u32| Call::Reduce {
            root: None,
            op: Op::Sum,
            ty: Type::U64,
            data: Bytes::from((u64::from(rank) + 1).to_le_bytes().to_vec()),
        };
        // Rank 0 opens a round among {0, 1}; rank 2 joins after that and
        // waits for the next round, which rank 0 opens among {0, 1, 2}.
        let first = {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tokio::spawn(async move { collectives.enter(0, sum(0), &cancel).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        collectives.join([2]);
        let joiner = {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tokio::spawn(async move {
                collectives
                    .enter(2, sum(2), &cancel)
                    .await
                    .and_then(|d| d.for_rank(2))
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let one = collectives.enter(1, sum(1), &cancel).await.unwrap();
        let three = 3u64.to_le_bytes().to_vec();
        assert_eq!(one.for_rank(1).unwrap().as_deref(), Some(&three[..]));
        let zero = first.await.unwrap().unwrap();
        assert_eq!(zero.for_rank(0).unwrap().as_deref(), Some(&three[..]));
        let six = 6u64.to_le_bytes().to_vec();
        for result in round(&collectives, &[0, 1], sum).await {
            assert_eq!(result.unwrap().as_deref(), Some(&six[..]));
        }
        assert_eq!(joiner.await.unwrap().unwrap().as_deref(), Some(&six[..]));

        // Rank 1 exits cleanly: later rounds are among 0 and 2, and a
        // gather lays them out in rank order.
        collectives.depart(1, false);
        let gathered = round(&collectives, &[2, 0], |rank| Call::Gather {
            root: 2,
            data: Bytes::from(vec![rank as u8]),
            out: (rank == 2).then_some(2),
        })
        .await;
        assert_eq!(
            gathered[0].as_ref().unwrap().as_deref(),
            Some(&[0u8, 2][..])
        );
        assert_eq!(gathered[1].as_ref().unwrap(), &None);
        // A root that is not a member is refused, to every member.
        for result in round(&collectives, &[0, 2], |_| Call::Broadcast {
            root: 1,
            len: 0,
            data: None,
        })
        .await
        {
            assert!(matches!(result, Err(MeshError::Invalid(_))), "{result:?}");
        }
    }

    #[tokio::test]
    async fn a_member_leaving_fails_the_open_round_for_every_member() {
        let collectives = Arc::new(Collectives::new(3));
        let cancel = Cancel::new();
        let waiting = {
            let (collectives, cancel) = (collectives.clone(), cancel.clone());
            tokio::spawn(async move { collectives.enter(0, Call::Barrier, &cancel).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        collectives.depart(2, false);
        assert!(matches!(
            waiting.await.unwrap().and_then(|d| d.for_rank(0)),
            Err(MeshError::PeerGone)
        ));
        // Rank 1 had not called yet: its call is the failed round's too.
        let late = collectives.enter(1, Call::Barrier, &cancel).await;
        assert!(matches!(late, Err(MeshError::PeerGone)));
        // Then the two go on together.
        for result in round(&collectives, &[0, 1], |_| Call::Barrier).await {
            assert_eq!(result.unwrap(), None);
        }
    }
}
