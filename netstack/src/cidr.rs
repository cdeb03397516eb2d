//! IPv4 CIDR blocks, parsed strictly: `10.0.1.0/24`, never `10.0.1.7/24`.
//!
//! A [`Cidr`] always names a network: its host bits are zero and its prefix is
//! at most 32. That is what a subnet or a security-group peer means, so a
//! block with host bits set is a typo we refuse rather than silently mask.
//!
//! ```
//! use weft_netstack::cidr::Cidr;
//! use core::net::Ipv4Addr;
//!
//! let cidr: Cidr = "10.0.1.0/24".parse().unwrap();
//! assert!(cidr.contains(Ipv4Addr::new(10, 0, 1, 200)));
//! assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
//! assert!("10.0.1.7/24".parse::<Cidr>().is_err());
//! ```

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

/// Why a string or an address/prefix pair is not a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not of the form `a.b.c.d/n`.
    #[error("expected an IPv4 CIDR block such as 10.0.1.0/24")]
    Syntax,
    /// The prefix length is over 32.
    #[error("prefix length {0} is over 32")]
    PrefixLen(u8),
    /// The address has bits set below the prefix.
    #[error("{address}/{prefix_len} has host bits set; the network is {network}/{prefix_len}")]
    HostBits {
        /// The address as given.
        address: Ipv4Addr,
        /// The prefix length as given.
        prefix_len: u8,
        /// What the address would be with its host bits cleared.
        network: Ipv4Addr,
    },
}

/// An IPv4 network: an address with zero host bits and a prefix of 0..=32.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// The netmask of a prefix length, as a `u32`; `prefix_len` must be ≤ 32.
const fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - n as u32),
    }
}

impl Cidr {
    /// Every address: `0.0.0.0/0`.
    pub const ANY: Cidr = Cidr {
        network: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    };

    /// The block `network/prefix_len`; errors if the prefix is over 32 or the
    /// address has host bits set.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Cidr, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::PrefixLen(prefix_len));
        }
        let masked = Ipv4Addr::from_bits(network.to_bits() & mask(prefix_len));
        if masked != network {
            return Err(CidrError::HostBits {
                address: network,
                prefix_len,
                network: masked,
            });
        }
        Ok(Cidr {
            network,
            prefix_len,
        })
    }

    /// The block holding exactly `address`: `address/32`.
    pub const fn host(address: Ipv4Addr) -> Cidr {
        Cidr {
            network: address,
            prefix_len: 32,
        }
    }

    /// The network address (the first address of the block).
    pub const fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length, 0..=32.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask, e.g. `255.255.255.0` for a /24.
    pub const fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(mask(self.prefix_len))
    }

    /// The last address of the block (its broadcast address for prefixes
    /// under 31).
    pub const fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network.to_bits() | !mask(self.prefix_len))
    }

    /// How many addresses the block spans, 1..=2^32.
    pub const fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len as u32)
    }

    /// Whether `address` is inside the block.
    pub const fn contains(&self, address: Ipv4Addr) -> bool {
        address.to_bits() & mask(self.prefix_len) == self.network.to_bits()
    }

    /// Whether every address of `other` is inside this block.
    pub const fn contains_cidr(&self, other: &Cidr) -> bool {
        self.prefix_len <= other.prefix_len && self.contains(other.network)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Accepts `a.b.c.d/n` with a dotted-quad address (no leading zeros, as
    /// [`Ipv4Addr`] parses it), a decimal prefix of 0..=32 without sign or
    /// leading zeros, no spaces, and zero host bits. Never panics.
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let address: Ipv4Addr = address.parse().map_err(|_| CidrError::Syntax)?;
        let canonical = matches!(prefix.len(), 1 | 2)
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && !(prefix.len() == 2 && prefix.starts_with('0'));
        if !canonical {
            return Err(CidrError::Syntax);
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| CidrError::Syntax)?;
        Cidr::new(address, prefix_len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Cidr> for smoltcp::wire::Ipv4Cidr {
    fn from(cidr: Cidr) -> Self {
        smoltcp::wire::Ipv4Cidr::new(cidr.network, cidr.prefix_len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_describes_a_block() {
        let cidr: Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(cidr.network(), ip("10.0.1.0"));
        assert_eq!(cidr.prefix_len(), 24);
        assert_eq!(cidr.netmask(), ip("255.255.255.0"));
        assert_eq!(cidr.broadcast(), ip("10.0.1.255"));
        assert_eq!(cidr.size(), 256);
        assert!(cidr.contains(ip("10.0.1.0")));
        assert!(cidr.contains(ip("10.0.1.255")));
        assert!(!cidr.contains(ip("10.0.2.0")));
        assert!(!cidr.contains(ip("10.0.0.255")));
        assert_eq!(cidr.to_string(), "10.0.1.0/24");
    }

    #[test]
    fn edges_of_the_prefix_range() {
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(any, Cidr::ANY);
        assert_eq!(any.size(), 1 << 32);
        assert!(any.contains(ip("255.255.255.255")));
        assert_eq!(any.broadcast(), Ipv4Addr::BROADCAST);

        let host: Cidr = "192.0.2.7/32".parse().unwrap();
        assert_eq!(host, Cidr::host(ip("192.0.2.7")));
        assert_eq!(host.size(), 1);
        assert!(host.contains(ip("192.0.2.7")));
        assert!(!host.contains(ip("192.0.2.6")));
    }

    #[test]
    fn refuses_host_bits() {
        assert_eq!(
            "10.0.1.7/24".parse::<Cidr>(),
            Err(CidrError::HostBits {
                address: ip("10.0.1.7"),
                prefix_len: 24,
                network: ip("10.0.1.0"),
            })
        );
        assert!(Cidr::new(ip("10.0.0.1"), 0).is_err());
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "",
            "/",
            "10.0.1.0",
            "10.0.1.0/",
            "10.0.1.0/33",
            "10.0.1.0/024",
            "10.0.1.0/+4",
            "10.0.1.0/ 24",
            "10.0.1.0 /24",
            "10.0.1/24",
            "010.0.1.0/24",
            "10.0.1.0/24/1",
            "10.0.1.0/255",
            "::/0",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(Cidr::new(ip("0.0.0.0"), 33), Err(CidrError::PrefixLen(33)));
    }

    #[test]
    fn containment_of_blocks() {
        let wide: Cidr = "10.0.0.0/16".parse().unwrap();
        let narrow: Cidr = "10.0.3.0/24".parse().unwrap();
        assert!(wide.contains_cidr(&narrow));
        assert!(!narrow.contains_cidr(&wide));
        assert!(Cidr::ANY.contains_cidr(&wide));
    }

    #[test]
    fn converts_to_smoltcp_and_serde() {
        let cidr: Cidr = "10.0.1.0/24".parse().unwrap();
        let theirs: smoltcp::wire::Ipv4Cidr = cidr.into();
        assert_eq!(theirs.prefix_len(), 24);
        assert_eq!(theirs.address(), ip("10.0.1.0"));
        assert_eq!(serde_json::to_string(&cidr).unwrap(), "\"10.0.1.0/24\"");
        assert_eq!(
            serde_json::from_str::<Cidr>("\"10.0.1.0/24\"").unwrap(),
            cidr
        );
        assert!(serde_json::from_str::<Cidr>("\"10.0.1.1/24\"").is_err());
    }
}
