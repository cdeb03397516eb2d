//! Connection tracking: which flows an interface has allowed, until when.
//!
//! Each interface has one [`ConnTrack`] table. When its rules allow a packet
//! that opens a flow, the router [`insert`](ConnTrack::insert)s the flow with
//! the direction it was first seen in at this interface (its *origin*). From
//! then on, until the flow times out, [`lookup`](ConnTrack::lookup) matches
//! the flow's packets both ways — the original direction and the replies — and
//! the router lets them pass without consulting any rule. So removing a rule
//! never cuts a tracked flow; it ends when it expires.
//!
//! What is tracked, keyed by protocol, addresses and ports:
//! - TCP, by ports, with a small state machine: *unreplied* (only the opening
//!   direction seen), *established* (a reply seen), *closing* (a FIN or RST
//!   seen). A bare RST opens nothing. A SYN without ACK in the original
//!   direction reopens a closing flow (port reuse).
//! - UDP, by ports.
//! - ICMP echo, by identifier: a request opens, replies match it.
//! - Other IP protocols, by addresses only.
//!
//! ICMP errors (unreachable, time exceeded, parameter problem) open nothing
//! but match as [`Match::Related`] when the datagram they quote belongs to a
//! tracked flow and they are addressed to its sender. Other ICMP messages are
//! never tracked.
//!
//! # Limits
//! The table holds at most [`Config::capacity`] live flows. When it is full,
//! expired flows are purged first; if none are, the new flow is refused
//! ([`Full`]), counted in [`refused`](ConnTrack::refused), and its packet
//! dropped, while tracked flows keep passing. A flow is live while
//! `now < deadline`, where the deadline is the last packet's time plus the
//! timeout of its state ([`Timeouts`]). Memory is O(capacity): the timer
//! queue is compacted when it outgrows a multiple of the capacity.
//!
//! Time is passed in; it must not go backwards (if it does, flows live
//! longer, nothing worse).
//!
//! ```
//! use weft_netstack::conntrack::{Config, ConnTrack, Match};
//! use weft_netstack::flow::{Flow, Transport};
//! use weft_netstack::secgroup::Direction;
//! use smoltcp::time::Instant;
//!
//! let query = Flow {
//!     src: "10.0.1.2".parse().unwrap(),
//!     dst: "10.0.1.3".parse().unwrap(),
//!     transport: Transport::Udp { src_port: 5353, dst_port: 53 },
//! };
//! let answer = Flow { src: query.dst, dst: query.src, transport: Transport::Udp { src_port: 53, dst_port: 5353 } };
//!
//! let mut table = ConnTrack::new(Config::default());
//! let now = Instant::from_secs(0);
//! assert_eq!(table.insert(now, &query, Direction::Egress), Ok(true));
//! assert_eq!(table.lookup(now, &answer, Direction::Ingress), Some(Match::Reply));
//! // UDP flows live 30 s after their last packet.
//! assert_eq!(table.lookup(Instant::from_secs(30), &answer, Direction::Ingress), None);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use core::net::Ipv4Addr;

use smoltcp::time::{Duration, Instant};

use crate::flow::{Flow, Icmp, Quoted, QuotedTransport, Transport, proto};
use crate::secgroup::Direction;

/// Default capacity of one interface's table, in flows. About 2 MiB when full.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// ICMP echo request and reply types, used in keys.
const ECHO_REQUEST: u16 = 8;
const ECHO_REPLY: u16 = 0;

/// How long a flow lives after its last packet, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP after a reply was seen and before any FIN or RST. Default 300 s.
    pub tcp_established: Duration,
    /// TCP before a reply (a SYN alone) or after a FIN or RST. Default 30 s.
    pub tcp_transitory: Duration,
    /// UDP. Default 30 s.
    pub udp: Duration,
    /// ICMP echo. Default 10 s.
    pub icmp: Duration,
    /// Other IP protocols. Default 30 s.
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_established: Duration::from_secs(300),
            tcp_transitory: Duration::from_secs(30),
            udp: Duration::from_secs(30),
            icmp: Duration::from_secs(10),
            other: Duration::from_secs(30),
        }
    }
}

/// A table's size and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The most live flows; 0 refuses every new flow. Default [`DEFAULT_CAPACITY`].
    pub capacity: usize,
    /// Timeouts by state.
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: DEFAULT_CAPACITY,
            timeouts: Timeouts::default(),
        }
    }
}

/// A flow's identity in its original direction: protocol, addresses, ports.
///
/// For ICMP echo the source "port" is the identifier and the destination
/// "port" the message type (8 request, 0 reply), so a request's reverse is a
/// reply, never another request. Other protocols have ports 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// IP protocol number.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port, or ICMP echo identifier.
    pub src_port: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port, or ICMP echo type.
    pub dst_port: u16,
}

impl Key {
    /// The key of `flow`, or `None` for the messages that are never tracked
    /// (ICMP other than echo).
    pub fn of(flow: &Flow) -> Option<Key> {
        let (protocol, src_port, dst_port) = match flow.transport {
            Transport::Tcp {
                src_port, dst_port, ..
            } => (proto::TCP, src_port, dst_port),
            Transport::Udp { src_port, dst_port } => (proto::UDP, src_port, dst_port),
            Transport::Icmp(Icmp::EchoRequest { ident }) => (proto::ICMP, ident, ECHO_REQUEST),
            Transport::Icmp(Icmp::EchoReply { ident }) => (proto::ICMP, ident, ECHO_REPLY),
            Transport::Icmp(Icmp::Error { .. } | Icmp::Other { .. }) => return None,
            Transport::Other(protocol) => (protocol, 0, 0),
        };
        Some(Key {
            protocol,
            src: flow.src,
            src_port,
            dst: flow.dst,
            dst_port,
        })
    }

    /// The key of a datagram quoted in an ICMP error, if it could be tracked.
    fn of_quoted(quoted: &Quoted) -> Option<Key> {
        let (protocol, src_port, dst_port) = match quoted.transport {
            QuotedTransport::Tcp { src_port, dst_port } => (proto::TCP, src_port, dst_port),
            QuotedTransport::Udp { src_port, dst_port } => (proto::UDP, src_port, dst_port),
            QuotedTransport::EchoRequest { ident } => (proto::ICMP, ident, ECHO_REQUEST),
            QuotedTransport::EchoReply { ident } => (proto::ICMP, ident, ECHO_REPLY),
            QuotedTransport::Other(proto::ICMP) => return None,
            QuotedTransport::Other(protocol) => (protocol, 0, 0),
        };
        Some(Key {
            protocol,
            src: quoted.src,
            src_port,
            dst: quoted.dst,
            dst_port,
        })
    }

    /// The key of the replies: addresses and ports swapped (for ICMP echo:
    /// addresses swapped, request and reply types exchanged).
    pub fn reverse(&self) -> Key {
        if self.protocol == proto::ICMP {
            let dst_port = if self.dst_port == ECHO_REQUEST {
                ECHO_REPLY
            } else {
                ECHO_REQUEST
            };
            Key {
                src: self.dst,
                dst: self.src,
                dst_port,
                ..*self
            }
        } else {
            Key {
                protocol: self.protocol,
                src: self.dst,
                src_port: self.dst_port,
                dst: self.src,
                dst_port: self.src_port,
            }
        }
    }
}

/// A tracked flow's state, which picks its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP, only the opening direction seen.
    TcpUnreplied,
    /// TCP, a reply seen, no FIN or RST yet.
    TcpEstablished,
    /// TCP, a FIN or RST seen.
    TcpClosing,
    /// UDP.
    Udp,
    /// ICMP echo.
    Icmp,
    /// Another IP protocol.
    Other,
}

impl State {
    fn timeout(self, timeouts: &Timeouts) -> Duration {
        match self {
            State::TcpEstablished => timeouts.tcp_established,
            State::TcpUnreplied | State::TcpClosing => timeouts.tcp_transitory,
            State::Udp => timeouts.udp,
            State::Icmp => timeouts.icmp,
            State::Other => timeouts.other,
        }
    }
}

/// How a packet relates to a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// It goes the way the flow's first packet went.
    Original,
    /// It goes the other way: a reply.
    Reply,
    /// An ICMP error about a packet of the flow.
    Related,
}

/// The table is full of live flows; the new one was refused and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection tracking table full ({capacity} flows)")]
pub struct Full {
    /// The table's capacity.
    pub capacity: usize,
}

/// Where a flow lives in the table: its key and the direction it was first
/// seen in at this interface.
type Slot = (Key, Direction);

#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    /// The flow is live while `now < deadline`.
    deadline: Instant,
    /// The earliest deadline among this entry's items in the timer queue;
    /// invariant: such an item exists and `queued <= deadline`.
    queued: Instant,
}

/// The timer queue holds at most this many items per unit of capacity (plus
/// a constant) before it is rebuilt from the entries.
const QUEUE_SLACK: usize = 4;

/// One interface's connection tracking table.
#[derive(Debug, Clone)]
pub struct ConnTrack {
    config: Config,
    entries: HashMap<Slot, Entry>,
    /// Min-queue of (deadline, slot), possibly stale: see [`Entry::queued`].
    queue: BinaryHeap<Reverse<(Instant, Slot)>>,
    refused: u64,
}

/// The state after a packet of `flow`, matched as `how` (None: opening).
fn next_state(previous: Option<State>, flow: &Flow, how: Option<Match>) -> State {
    match flow.transport {
        Transport::Tcp { flags, .. } => match (previous, how) {
            _ if flags.fin || flags.rst => State::TcpClosing,
            (Some(State::TcpUnreplied), Some(Match::Reply)) => State::TcpEstablished,
            (Some(State::TcpClosing), Some(Match::Original)) if flags.syn && !flags.ack => {
                State::TcpUnreplied
            }
            (Some(state), _) => state,
            (None, _) => State::TcpUnreplied,
        },
        Transport::Udp { .. } => State::Udp,
        Transport::Icmp(_) => State::Icmp,
        Transport::Other(_) => State::Other,
    }
}

fn deadline(now: Instant, timeout: Duration) -> Instant {
    let micros = i64::try_from(timeout.total_micros()).unwrap_or(i64::MAX);
    Instant::from_micros(now.total_micros().saturating_add(micros))
}

impl ConnTrack {
    /// An empty table.
    pub fn new(config: Config) -> ConnTrack {
        ConnTrack {
            config,
            entries: HashMap::new(),
            queue: BinaryHeap::new(),
            refused: 0,
        }
    }

    /// The table's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn live(&self, now: Instant, slot: &Slot) -> Option<&Entry> {
        self.entries.get(slot).filter(|e| now < e.deadline)
    }

    /// How a packet of `flow`, crossing this interface in `direction`,
    /// relates to a live tracked flow, if it does. Changes nothing.
    pub fn lookup(&self, now: Instant, flow: &Flow, direction: Direction) -> Option<Match> {
        if let Some(key) = Key::of(flow) {
            if self.live(now, &(key, direction)).is_some() {
                return Some(Match::Original);
            }
            if self
                .live(now, &(key.reverse(), direction.reverse()))
                .is_some()
            {
                return Some(Match::Reply);
            }
            return None;
        }
        let Transport::Icmp(Icmp::Error {
            quoted: Some(quoted),
        }) = flow.transport
        else {
            return None;
        };
        // The error goes back to the quoted datagram's sender, the opposite
        // way through this interface.
        let key = Key::of_quoted(&quoted)?;
        let quoted_direction = direction.reverse();
        let tracked = self.live(now, &(key, quoted_direction)).is_some()
            || self.live(now, &(key.reverse(), direction)).is_some();
        (tracked && flow.dst == quoted.src).then_some(Match::Related)
    }

    /// Records a packet of a tracked flow that `lookup` matched as `how`:
    /// advances its state and pushes its deadline. `Related` changes nothing.
    pub fn refresh(&mut self, now: Instant, flow: &Flow, direction: Direction, how: Match) {
        let Some(key) = Key::of(flow) else { return };
        let slot = match how {
            Match::Original => (key, direction),
            Match::Reply => (key.reverse(), direction.reverse()),
            Match::Related => return,
        };
        let timeouts = self.config.timeouts;
        let Some(entry) = self.entries.get_mut(&slot) else {
            return;
        };
        entry.state = next_state(Some(entry.state), flow, Some(how));
        entry.deadline = deadline(now, entry.state.timeout(&timeouts));
        if entry.deadline < entry.queued {
            entry.queued = entry.deadline;
            self.queue.push(Reverse((entry.deadline, slot)));
            self.compact_if_needed();
        }
    }

    /// Whether a new flow opened by `flow` would need an entry: false for
    /// packets that open nothing (a bare RST, ICMP other than echo request).
    pub fn opens(flow: &Flow) -> bool {
        match flow.transport {
            Transport::Tcp { flags, .. } => !flags.rst,
            Transport::Udp { .. } | Transport::Other(_) => true,
            Transport::Icmp(icmp) => matches!(icmp, Icmp::EchoRequest { .. }),
        }
    }

    /// Makes sure `needed` new flows fit, purging expired ones if the table
    /// is too full; if they do not fit, counts one refusal and errs.
    pub fn reserve(&mut self, now: Instant, needed: usize) -> Result<(), Full> {
        if self.entries.len() + needed > self.config.capacity {
            self.expire(now);
        }
        if self.entries.len() + needed > self.config.capacity {
            self.refused += 1;
            return Err(Full {
                capacity: self.config.capacity,
            });
        }
        Ok(())
    }

    /// Tracks the flow `flow` opens, first seen here in `direction`. Call it
    /// for a packet the rules allowed and `lookup` did not match.
    ///
    /// Returns `Ok(false)` if the packet opens nothing (see
    /// [`opens`](ConnTrack::opens)), `Ok(true)` if it is tracked now, and
    /// [`Full`] (counted) if the table is full of live flows.
    pub fn insert(
        &mut self,
        now: Instant,
        flow: &Flow,
        direction: Direction,
    ) -> Result<bool, Full> {
        let Some(key) = Key::of(flow).filter(|_| Self::opens(flow)) else {
            return Ok(false);
        };
        let slot = (key, direction);
        if !self.entries.contains_key(&slot) {
            self.reserve(now, 1)?;
        }
        let state = next_state(None, flow, None);
        let deadline = deadline(now, state.timeout(&self.config.timeouts));
        self.entries.insert(
            slot,
            Entry {
                state,
                deadline,
                queued: deadline,
            },
        );
        self.queue.push(Reverse((deadline, slot)));
        self.compact_if_needed();
        Ok(true)
    }

    /// Removes the flows whose deadline is at or before `now`; returns how
    /// many. Costs O(log n) per removed flow.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while let Some(&Reverse((at, slot))) = self.queue.peek() {
            if at > now {
                break;
            }
            self.queue.pop();
            let Some(entry) = self.entries.get_mut(&slot) else {
                continue;
            };
            if entry.queued != at {
                // A stale item: the entry has an earlier one, already handled.
                continue;
            }
            if entry.deadline <= now {
                self.entries.remove(&slot);
                removed += 1;
            } else {
                entry.queued = entry.deadline;
                self.queue.push(Reverse((entry.deadline, slot)));
            }
        }
        removed
    }

    /// Rebuilds the timer queue from the entries when stale items have made
    /// it large; amortized O(1) per push.
    fn compact_if_needed(&mut self) {
        if self.queue.len() <= QUEUE_SLACK * self.config.capacity + 64 {
            return;
        }
        self.queue = self
            .entries
            .iter_mut()
            .map(|(slot, entry)| {
                entry.queued = entry.deadline;
                Reverse((entry.deadline, *slot))
            })
            .collect();
    }

    /// The state of the flow `key` first seen in `origin`, if live.
    pub fn get(&self, now: Instant, key: &Key, origin: Direction) -> Option<State> {
        self.live(now, &(*key, origin)).map(|e| e.state)
    }

    /// How many flows the table holds, including expired ones not yet purged.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many new flows were refused because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Forgets every flow (the refusal count stays).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests;
