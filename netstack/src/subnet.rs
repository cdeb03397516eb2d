//! Subnets and the allocation of their host addresses.
//!
//! A [`Subnet`] is a CIDR block of prefix /8 to /30 with a name. Three
//! addresses of it are never handed to an interface: the network address, the
//! gateway (the first address after it, where the gateway will answer) and the
//! broadcast address (the last). An [`Allocator`] hands out the rest, lowest
//! first, and takes reservations of given addresses.
//!
//! ```
//! use weft_netstack::{id::SubnetId, subnet::{Allocator, Subnet}};
//! use core::net::Ipv4Addr;
//!
//! let subnet = Subnet::new(SubnetId::from_entropy(1), "10.0.1.0/24".parse().unwrap(), "app").unwrap();
//! assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 0, 1, 1));
//!
//! let mut addrs = Allocator::new(&subnet);
//! addrs.reserve(Ipv4Addr::new(10, 0, 1, 2)).unwrap();
//! assert_eq!(addrs.allocate(), Ok(Ipv4Addr::new(10, 0, 1, 3)));
//! ```

use std::collections::BTreeSet;

use core::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::id::SubnetId;

/// The shortest prefix a subnet may have (the largest subnet is a /8).
pub const MIN_PREFIX_LEN: u8 = 8;
/// The longest prefix a subnet may have: a /30 leaves one host address.
pub const MAX_PREFIX_LEN: u8 = 30;
/// The longest subnet name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Why a subnet cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// The prefix is outside /8../30.
    #[error("a subnet's prefix must be /{MIN_PREFIX_LEN} to /{MAX_PREFIX_LEN}, not /{0}")]
    PrefixLen(u8),
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("a subnet's name is at most {MAX_NAME_LEN} bytes")]
    NameTooLong,
}

/// A subnet: an id, a CIDR block of /8 to /30, and a name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SubnetRepr", into = "SubnetRepr")]
pub struct Subnet {
    id: SubnetId,
    cidr: Cidr,
    name: String,
}

/// The serialized form; deserializing goes through [`Subnet::new`].
#[derive(serde::Serialize, serde::Deserialize)]
struct SubnetRepr {
    id: SubnetId,
    cidr: Cidr,
    name: String,
}

impl TryFrom<SubnetRepr> for Subnet {
    type Error = SubnetError;

    fn try_from(repr: SubnetRepr) -> Result<Subnet, SubnetError> {
        Subnet::new(repr.id, repr.cidr, repr.name)
    }
}

impl From<Subnet> for SubnetRepr {
    fn from(subnet: Subnet) -> SubnetRepr {
        SubnetRepr {
            id: subnet.id,
            cidr: subnet.cidr,
            name: subnet.name,
        }
    }
}

impl Subnet {
    /// A subnet over `cidr`; errors if its prefix is not /8../30 or the name
    /// is too long.
    pub fn new(id: SubnetId, cidr: Cidr, name: impl Into<String>) -> Result<Subnet, SubnetError> {
        if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&cidr.prefix_len()) {
            return Err(SubnetError::PrefixLen(cidr.prefix_len()));
        }
        let name = name.into();
        if name.len() > MAX_NAME_LEN {
            return Err(SubnetError::NameTooLong);
        }
        Ok(Subnet { id, cidr, name })
    }

    /// The subnet's id.
    pub fn id(&self) -> SubnetId {
        self.id
    }

    /// The subnet's block.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The subnet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The gateway address: the first address after the network address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.cidr.network().to_bits() + 1)
    }

    /// The first address an interface may have (after the gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.cidr.network().to_bits() + 2)
    }

    /// The last address an interface may have (before the broadcast address).
    pub fn last_host(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.cidr.broadcast().to_bits() - 1)
    }

    /// How many addresses interfaces may have: the block less three.
    pub fn host_count(&self) -> u32 {
        // size() ≤ 2^24 for a /8, so this fits.
        (self.cidr.size() - 3) as u32
    }

    /// Whether `address` is one an interface may have: inside the block and
    /// not the network, gateway or broadcast address.
    pub fn is_host(&self, address: Ipv4Addr) -> bool {
        (self.first_host()..=self.last_host()).contains(&address)
    }
}

/// Why [`Allocator::allocate`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every host address of the subnet is taken.
    #[error("no free address left in {0}")]
    Exhausted(Cidr),
}

/// Why [`Allocator::reserve`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// The address is not inside the subnet.
    #[error("{address} is not inside {cidr}")]
    Outside {
        /// The address asked for.
        address: Ipv4Addr,
        /// The subnet's block.
        cidr: Cidr,
    },
    /// The address is the network, gateway or broadcast address.
    #[error("{0} is reserved (network, gateway or broadcast address)")]
    Reserved(Ipv4Addr),
    /// Another interface already has the address.
    #[error("{0} is already taken")]
    Taken(Ipv4Addr),
}

/// Hands out a subnet's host addresses, lowest free first.
///
/// It holds only the taken addresses, so a /8 costs nothing until used.
/// It is not persisted: after a restart, rebuild it by
/// [`reserve`](Allocator::reserve)-ing the addresses of the stored records.
#[derive(Debug, Clone)]
pub struct Allocator {
    subnet: Subnet,
    taken: BTreeSet<Ipv4Addr>,
}

impl Allocator {
    /// An allocator for `subnet` with every host address free.
    pub fn new(subnet: &Subnet) -> Allocator {
        Allocator {
            subnet: subnet.clone(),
            taken: BTreeSet::new(),
        }
    }

    /// Takes and returns the lowest free host address.
    ///
    /// Costs O(k log n) where k is the length of the run of taken addresses
    /// at the bottom of the free space.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, AllocError> {
        let mut candidate = self.subnet.first_host();
        for &taken in self.taken.range(candidate..) {
            if taken != candidate {
                break;
            }
            // Cannot overflow: taken addresses are at most the last host,
            // which is below the broadcast address.
            candidate = Ipv4Addr::from_bits(candidate.to_bits() + 1);
        }
        if candidate > self.subnet.last_host() {
            return Err(AllocError::Exhausted(self.subnet.cidr()));
        }
        self.taken.insert(candidate);
        Ok(candidate)
    }

    /// Takes `address`, which must be a free host address of the subnet.
    pub fn reserve(&mut self, address: Ipv4Addr) -> Result<(), ReserveError> {
        let cidr = self.subnet.cidr();
        if !cidr.contains(address) {
            return Err(ReserveError::Outside { address, cidr });
        }
        if !self.subnet.is_host(address) {
            return Err(ReserveError::Reserved(address));
        }
        if !self.taken.insert(address) {
            return Err(ReserveError::Taken(address));
        }
        Ok(())
    }

    /// Frees `address`; returns whether it was taken.
    pub fn release(&mut self, address: Ipv4Addr) -> bool {
        self.taken.remove(&address)
    }

    /// Whether `address` is taken.
    pub fn is_taken(&self, address: Ipv4Addr) -> bool {
        self.taken.contains(&address)
    }

    /// How many addresses are taken.
    pub fn taken_count(&self) -> usize {
        self.taken.len()
    }

    /// The subnet this allocator serves.
    pub fn subnet(&self) -> &Subnet {
        &self.subnet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn subnet(cidr: &str) -> Subnet {
        Subnet::new(SubnetId::from_entropy(1), cidr.parse().unwrap(), "test").unwrap()
    }

    #[test]
    fn gateway_and_host_range() {
        let s = subnet("10.0.1.0/24");
        assert_eq!(s.gateway(), ip("10.0.1.1"));
        assert_eq!(s.first_host(), ip("10.0.1.2"));
        assert_eq!(s.last_host(), ip("10.0.1.254"));
        assert_eq!(s.host_count(), 253);
        assert!(s.is_host(ip("10.0.1.2")));
        assert!(!s.is_host(ip("10.0.1.0")));
        assert!(!s.is_host(ip("10.0.1.1")));
        assert!(!s.is_host(ip("10.0.1.255")));
        assert!(!s.is_host(ip("10.0.2.2")));
    }

    #[test]
    fn prefix_must_be_8_to_30() {
        for ok in ["10.0.0.0/8", "10.0.0.0/30", "192.168.0.0/16"] {
            assert!(Subnet::new(SubnetId::from_entropy(1), ok.parse().unwrap(), "").is_ok());
        }
        for (bad, len) in [
            ("0.0.0.0/0", 0),
            ("10.0.0.0/7", 7),
            ("10.0.0.0/31", 31),
            ("10.0.0.1/32", 32),
        ] {
            assert_eq!(
                Subnet::new(SubnetId::from_entropy(1), bad.parse().unwrap(), ""),
                Err(SubnetError::PrefixLen(len))
            );
        }
        assert_eq!(
            Subnet::new(
                SubnetId::from_entropy(1),
                "10.0.0.0/24".parse().unwrap(),
                "x".repeat(256)
            ),
            Err(SubnetError::NameTooLong)
        );
    }

    #[test]
    fn allocates_lowest_free_and_reuses_released() {
        let mut a = Allocator::new(&subnet("10.0.1.0/24"));
        assert_eq!(a.allocate(), Ok(ip("10.0.1.2")));
        assert_eq!(a.allocate(), Ok(ip("10.0.1.3")));
        a.reserve(ip("10.0.1.5")).unwrap();
        assert_eq!(a.allocate(), Ok(ip("10.0.1.4")));
        assert_eq!(a.allocate(), Ok(ip("10.0.1.6")));
        assert!(a.release(ip("10.0.1.3")));
        assert!(!a.release(ip("10.0.1.3")));
        assert_eq!(a.allocate(), Ok(ip("10.0.1.3")));
        assert_eq!(a.taken_count(), 5);
    }

    #[test]
    fn exhausts_a_small_subnet() {
        let mut a = Allocator::new(&subnet("10.0.0.0/30"));
        assert_eq!(a.allocate(), Ok(ip("10.0.0.2")));
        let cidr = "10.0.0.0/30".parse().unwrap();
        assert_eq!(a.allocate(), Err(AllocError::Exhausted(cidr)));

        let mut a = Allocator::new(&subnet("10.0.0.0/28"));
        for _ in 0..13 {
            a.allocate().unwrap();
        }
        assert_eq!(
            a.allocate(),
            Err(AllocError::Exhausted("10.0.0.0/28".parse().unwrap()))
        );
        assert!(a.release(ip("10.0.0.9")));
        assert_eq!(a.allocate(), Ok(ip("10.0.0.9")));
    }

    #[test]
    fn reservation_errors() {
        let mut a = Allocator::new(&subnet("10.0.1.0/24"));
        assert_eq!(
            a.reserve(ip("10.0.2.9")),
            Err(ReserveError::Outside {
                address: ip("10.0.2.9"),
                cidr: "10.0.1.0/24".parse().unwrap()
            })
        );
        for reserved in ["10.0.1.0", "10.0.1.1", "10.0.1.255"] {
            assert_eq!(
                a.reserve(ip(reserved)),
                Err(ReserveError::Reserved(ip(reserved)))
            );
        }
        a.reserve(ip("10.0.1.254")).unwrap();
        assert_eq!(
            a.reserve(ip("10.0.1.254")),
            Err(ReserveError::Taken(ip("10.0.1.254")))
        );
        assert!(a.is_taken(ip("10.0.1.254")));
    }

    #[test]
    fn a_slash_8_allocates_without_walking_it() {
        let mut a = Allocator::new(&subnet("10.0.0.0/8"));
        a.reserve(ip("10.255.255.254")).unwrap();
        assert_eq!(a.allocate(), Ok(ip("10.0.0.2")));
    }

    #[test]
    fn serde_round_trip_validates() {
        let s = subnet("10.0.1.0/24");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"id":"subnet-000000000001","cidr":"10.0.1.0/24","name":"test"}"#
        );
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
        let bad = r#"{"id":"subnet-000000000001","cidr":"10.0.1.0/31","name":"test"}"#;
        assert!(serde_json::from_str::<Subnet>(bad).is_err());
    }
}
