//! Interface MAC addresses: locally administered, derived from the record id.
//!
//! The virtual network is L3 and forwards no Ethernet frames; the MAC is part
//! of an interface's identity for the endpoints and bridges that want one
//! (a TAP device, the dashboard). It is the record id's 48 bits with the two
//! low bits of the first octet forced to "locally administered, unicast", so
//! ids that differ only in those two bits share a MAC (1 in 4 of random ids
//! would need to collide in their other 46 bits as well).

use core::fmt;
use core::str::FromStr;

use crate::id::NicId;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected a MAC address such as 02:00:00:00:00:2a")]
pub struct ParseMacError;

impl Mac {
    /// The MAC of the record `id`.
    pub fn from_nic(id: NicId) -> Mac {
        let bytes = id.value().to_be_bytes();
        Mac([
            (bytes[2] & 0xfc) | 0x02,
            bytes[3],
            bytes[4],
            bytes[5],
            bytes[6],
            bytes[7],
        ])
    }

    /// Any MAC, as given.
    pub const fn from_octets(octets: [u8; 6]) -> Mac {
        Mac(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether it is locally administered (bit 1 set) and unicast (bit 0 clear).
    pub const fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }
}

impl fmt::Display for Mac {
    /// Lowercase, colon-separated: `02:00:00:00:00:2a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = ParseMacError;

    /// Accepts six colon-separated pairs of hex digits, either case.
    fn from_str(s: &str) -> Result<Mac, ParseMacError> {
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or(ParseMacError)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(Mac(octets))
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_id_and_locally_administered() {
        let mac = Mac::from_nic(NicId::from_entropy(0x0123_4567_89ab));
        assert_eq!(mac.octets(), [0x02, 0x23, 0x45, 0x67, 0x89, 0xab]);
        assert!(mac.is_local_unicast());
        let mac = Mac::from_nic(NicId::from_entropy(0xffff_ffff_ffff));
        assert_eq!(mac.to_string(), "fe:ff:ff:ff:ff:ff");
        assert!(mac.is_local_unicast());
        assert!(!Mac::from_octets([0x00, 0x1b, 0x21, 0, 0, 1]).is_local_unicast());
        assert!(!Mac::from_octets([0x03, 0, 0, 0, 0, 1]).is_local_unicast());
    }

    #[test]
    fn text_form() {
        let mac: Mac = "02:AB:cd:00:00:2a".parse().unwrap();
        assert_eq!(mac.to_string(), "02:ab:cd:00:00:2a");
        for bad in [
            "",
            "02:ab:cd:00:00",
            "02:ab:cd:00:00:2a:01",
            "2:ab:cd:00:00:2a",
            "02-ab-cd-00-00-2a",
            "02:ab:cd:00:00:+a",
            "02:ab:cd:00:00:2ä",
        ] {
            assert_eq!(bad.parse::<Mac>(), Err(ParseMacError), "{bad:?}");
        }
    }
}
