//! Shared helpers: a small network with named groups and ports.

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::time::Instant;
use weft_netstack::id::{Generator, GroupId, NicId};
use weft_netstack::record::Record;
use weft_netstack::router::{Config, DropReason, Router, Verdict};
use weft_netstack::secgroup::{Direction, Peer, Protocol, Rule, SecurityGroup};
use weft_netstack::subnet::{Allocator, Subnet};

/// A router over one subnet, 10.0.1.0/24, with an allocator and an id source.
pub struct Net {
    pub router: Router,
    pub ids: Generator,
    pub subnet: Subnet,
    pub addresses: Allocator,
}

impl Net {
    pub fn new(config: Config) -> Net {
        let mut ids = Generator::from_seed(0x100);
        let subnet = Subnet::new(ids.next_id(), "10.0.1.0/24".parse().unwrap(), "test").unwrap();
        let addresses = Allocator::new(&subnet);
        Net {
            router: Router::new(config),
            ids,
            subnet,
            addresses,
        }
    }

    /// A group with the given ingress rules (and the default egress).
    pub fn group(&mut self, name: &str, ingress: &[Rule]) -> GroupId {
        let id = self.ids.next_id();
        let mut group = SecurityGroup::new(id, name).unwrap();
        for rule in ingress {
            group.add_rule(Direction::Ingress, *rule).unwrap();
        }
        self.router.set_group(group);
        id
    }

    /// A new record with the next free address, in `groups`; not attached.
    pub fn record(&mut self, groups: &[GroupId]) -> Record {
        let ip = self.addresses.allocate().unwrap();
        let mut record = Record::new(self.ids.next_id(), self.subnet.id(), ip);
        record.set_security_groups(groups.to_vec()).unwrap();
        record
    }

    /// A new record, attached to `instance` and to the router.
    pub fn attach(&mut self, instance: &str, groups: &[GroupId]) -> Record {
        let mut record = self.record(groups);
        record.attach(instance, 0).unwrap();
        self.router.attach(&record).unwrap();
        record
    }

    pub fn send(&mut self, now: Instant, from: NicId, packet: &[u8]) -> Result<NicId, DropReason> {
        match self.router.route(now, from, packet) {
            Verdict::Deliver { to, .. } => Ok(to),
            Verdict::Drop(reason) => Err(reason),
        }
    }
}

pub fn tcp_rule(ports: &str) -> Rule {
    Rule::new(Protocol::Tcp, Some(ports.parse().unwrap()), Peer::Any).unwrap()
}

pub fn at(record: &Record, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(record.primary_ip(), port)
}

pub fn secs(s: i64) -> Instant {
    Instant::from_secs(s)
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A small deterministic PRNG (xorshift64*), so the hostile tests need no
/// randomness crate and replay exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for tests; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
