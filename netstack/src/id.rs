//! Resource identifiers: `subnet-…`, `sg-…` and `nic-…`, each 12 hex digits.
//!
//! An id is a kind prefix and a 48-bit value written as exactly twelve
//! lowercase hex digits, e.g. `nic-00000000002a`. In memory it is a `u64`, so
//! ids are `Copy` and cheap to hash on the router's per-packet path; on the
//! wire (JSON, the API) it is the string form.
//!
//! This crate draws no randomness: the caller passes entropy to
//! [`NicId::from_entropy`] (and the like), and tests use [`Generator`], which
//! counts up from a seed so that ids are distinct and readable.
//!
//! ```
//! use weft_netstack::id::{Generator, NicId};
//!
//! let id: NicId = "nic-00000000002a".parse().unwrap();
//! assert_eq!(id.value(), 42);
//! assert_eq!(id.to_string(), "nic-00000000002a");
//! assert!("nic-2a".parse::<NicId>().is_err());
//!
//! let mut ids = Generator::from_seed(1);
//! assert_eq!(ids.next_id::<NicId>().to_string(), "nic-000000000001");
//! ```

use core::fmt;
use core::str::FromStr;

/// Mask of the 48 bits an id holds.
const VALUE_MASK: u64 = (1 << 48) - 1;
/// Number of hex digits after the prefix.
const DIGITS: usize = 12;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string does not start with the kind's prefix (`nic-`, …).
    #[error("expected an id starting with `{expected}`")]
    Prefix {
        /// The prefix this kind of id has, dash included.
        expected: &'static str,
    },
    /// The part after the prefix is not exactly twelve lowercase hex digits.
    #[error("expected exactly 12 lowercase hex digits after the prefix")]
    Digits,
}

/// What every id type offers; lets [`Generator`] make any kind of id.
pub trait Id: Copy + Eq + Ord + core::hash::Hash + fmt::Display + FromStr {
    /// The prefix, dash included (`"nic-"`).
    const PREFIX: &'static str;

    /// Makes an id from the low 48 bits of `entropy`; the high bits are ignored.
    fn from_entropy(entropy: u64) -> Self;

    /// The 48-bit value.
    fn value(self) -> u64;
}

fn parse_value(s: &str, prefix: &'static str) -> Result<u64, ParseIdError> {
    let digits = s
        .strip_prefix(prefix)
        .ok_or(ParseIdError::Prefix { expected: prefix })?;
    if digits.len() != DIGITS
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ParseIdError::Digits);
    }
    // Twelve hex digits always fit in a u64; the error arm is unreachable but
    // mapped rather than unwrapped so that parsing can never panic.
    u64::from_str_radix(digits, 16).map_err(|_| ParseIdError::Digits)
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl Id for $name {
            const PREFIX: &'static str = $prefix;

            fn from_entropy(entropy: u64) -> Self {
                Self(entropy & VALUE_MASK)
            }

            fn value(self) -> u64 {
                self.0
            }
        }

        impl $name {
            /// Makes an id from the low 48 bits of `entropy`; the high bits
            /// are ignored. Pass a random `u64` for a fresh id.
            pub fn from_entropy(entropy: u64) -> Self {
                <Self as Id>::from_entropy(entropy)
            }

            /// The 48-bit value.
            pub fn value(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:012x}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            /// Accepts exactly the prefix and twelve lowercase hex digits.
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                parse_value(s, $prefix).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Identifies a [`Subnet`](crate::subnet::Subnet): `subnet-` and 12 hex digits.
    SubnetId,
    "subnet-"
);
id_type!(
    /// Identifies a [`SecurityGroup`](crate::secgroup::SecurityGroup): `sg-` and 12 hex digits.
    GroupId,
    "sg-"
);
id_type!(
    /// Identifies an interface [`Record`](crate::record::Record): `nic-` and 12 hex digits.
    NicId,
    "nic-"
);

/// A deterministic id source for tests and simulations: counts up from a seed.
///
/// Ids from one generator are distinct for 2^48 calls (the counter wraps
/// after that). Production code should pass real entropy to `from_entropy`.
#[derive(Debug, Clone)]
pub struct Generator {
    next: u64,
}

impl Generator {
    /// Starts counting at `seed` (masked to 48 bits).
    pub fn from_seed(seed: u64) -> Self {
        Self {
            next: seed & VALUE_MASK,
        }
    }

    /// The next id of kind `I`; every call advances the shared counter, so ids
    /// of different kinds from one generator have different values too.
    pub fn next_id<I: Id>(&mut self) -> I {
        let id = I::from_entropy(self.next);
        self.next = (self.next + 1) & VALUE_MASK;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display() {
        let id = GroupId::from_entropy(0x0123_4567_89ab);
        assert_eq!(id.to_string(), "sg-0123456789ab");
        assert_eq!("sg-0123456789ab".parse::<GroupId>(), Ok(id));
        assert_eq!(format!("{id:?}"), "sg-0123456789ab");
    }

    #[test]
    fn from_entropy_keeps_low_48_bits() {
        let id = SubnetId::from_entropy(u64::MAX);
        assert_eq!(id.value(), VALUE_MASK);
        assert_eq!(id.to_string(), "subnet-ffffffffffff");
    }

    #[test]
    fn parsing_is_strict() {
        for bad in [
            "",
            "nic-",
            "nic-2a",
            "nic-00000000002A",
            "nic-00000000002a0",
            "nic-0000000000+a",
            "nic-0000000000 a",
            "sg-00000000002a",
            "NIC-00000000002a",
            " nic-00000000002a",
            "nic-00000000002é",
        ] {
            assert!(bad.parse::<NicId>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "sg-000000000001".parse::<NicId>(),
            Err(ParseIdError::Prefix { expected: "nic-" })
        );
        assert_eq!(
            "nic-zz0000000000".parse::<NicId>(),
            Err(ParseIdError::Digits)
        );
    }

    #[test]
    fn generator_counts_and_wraps() {
        let mut ids = Generator::from_seed(VALUE_MASK);
        let a: NicId = ids.next_id();
        let b: GroupId = ids.next_id();
        assert_eq!(a.value(), VALUE_MASK);
        assert_eq!(b.value(), 0);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id = NicId::from_entropy(7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"nic-000000000007\"");
        assert_eq!(serde_json::from_str::<NicId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<NicId>("\"sg-000000000007\"").is_err());
        assert!(serde_json::from_str::<NicId>("7").is_err());
    }
}
