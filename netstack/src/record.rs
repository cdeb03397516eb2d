//! Interface records (NICs): an identity and addresses that outlive instances.
//!
//! A [`Record`] is what the host persists (as JSON, through serde) and what
//! the [`router`](crate::router) attaches as a port. It lives on its own: it
//! is created, attached to an instance, detached and attached to another,
//! keeping its id, MAC and addresses throughout.
//!
//! Invariants, kept by the methods and re-checked when deserializing: the MAC
//! is a locally administered unicast address; secondary addresses are
//! distinct and differ from the primary; groups are distinct; the status is
//! `InUse` exactly when there is an attachment; the limits below hold.
//! Whether the addresses belong to the record's subnet is the caller's to
//! check, through that subnet's [`Allocator`](crate::subnet::Allocator).
//!
//! ```
//! use weft_netstack::id::{NicId, SubnetId};
//! use weft_netstack::record::{Record, Status};
//!
//! let mut nic = Record::new(NicId::from_entropy(1), SubnetId::from_entropy(2), "10.0.1.2".parse().unwrap());
//! assert!(nic.source_dest_check());
//! nic.attach("inst-a", 1_700_000_000_000).unwrap();
//! assert_eq!(nic.status(), Status::InUse);
//! assert!(nic.owns("10.0.1.2".parse().unwrap()));
//! ```

mod mac;

use core::net::Ipv4Addr;

pub use mac::{Mac, ParseMacError};

use crate::id::{GroupId, NicId, SubnetId};

/// The most secondary addresses a record holds (16 addresses in all).
pub const MAX_SECONDARY_IPS: usize = 15;
/// The most security groups a record belongs to.
pub const MAX_GROUPS: usize = 8;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 255;

/// Whether a record is attached to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not attached; can be attached.
    Available,
    /// Attached to an instance.
    InUse,
}

/// Which instance a record is attached to, since when.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// The instance's id, as the host names it.
    pub instance: String,
    /// When it was attached, in milliseconds since the Unix epoch.
    pub attached_ms: u64,
}

/// Why a change to a record, or a stored record, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Attaching a record that is attached.
    #[error("the interface is already attached to {0}")]
    InUse(String),
    /// Detaching a record that is not attached.
    #[error("the interface is not attached")]
    NotAttached,
    /// An address the record holds already.
    #[error("the interface already has {0}")]
    DuplicateIp(Ipv4Addr),
    /// Over [`MAX_SECONDARY_IPS`].
    #[error("an interface has at most {MAX_SECONDARY_IPS} secondary addresses")]
    TooManyIps,
    /// A group listed twice.
    #[error("{0} is listed twice")]
    DuplicateGroup(GroupId),
    /// Over [`MAX_GROUPS`].
    #[error("an interface belongs to at most {MAX_GROUPS} security groups")]
    TooManyGroups,
    /// Over [`MAX_DESCRIPTION_LEN`].
    #[error("a description is at most {MAX_DESCRIPTION_LEN} bytes")]
    DescriptionTooLong,
    /// A stored status that disagrees with the stored attachment.
    #[error("status {0:?} disagrees with the attachment")]
    Status(Status),
    /// A stored MAC that is not locally administered unicast.
    #[error("{0} is not a locally administered unicast MAC")]
    Mac(Mac),
}

/// An interface record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RecordRepr", into = "RecordRepr")]
pub struct Record {
    id: NicId,
    subnet: SubnetId,
    mac: Mac,
    primary_ip: Ipv4Addr,
    secondary_ips: Vec<Ipv4Addr>,
    security_groups: Vec<GroupId>,
    source_dest_check: bool,
    description: String,
    attachment: Option<Attachment>,
}

impl Record {
    /// A record with a MAC derived from its id, no secondary address, no
    /// group, source/destination check on, no description, not attached.
    pub fn new(id: NicId, subnet: SubnetId, primary_ip: Ipv4Addr) -> Record {
        Record {
            id,
            subnet,
            mac: Mac::from_nic(id),
            primary_ip,
            secondary_ips: Vec::new(),
            security_groups: Vec::new(),
            source_dest_check: true,
            description: String::new(),
            attachment: None,
        }
    }

    /// The record's id.
    pub fn id(&self) -> NicId {
        self.id
    }

    /// The subnet its addresses are in.
    pub fn subnet(&self) -> SubnetId {
        self.subnet
    }

    /// Its MAC address.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Its primary address.
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.primary_ip
    }

    /// Its secondary addresses, in the order they were added.
    pub fn secondary_ips(&self) -> &[Ipv4Addr] {
        &self.secondary_ips
    }

    /// Every address: the primary, then the secondaries.
    pub fn ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        core::iter::once(self.primary_ip).chain(self.secondary_ips.iter().copied())
    }

    /// Whether `ip` is one of its addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.primary_ip == ip || self.secondary_ips.contains(&ip)
    }

    /// Adds a secondary address.
    pub fn add_secondary_ip(&mut self, ip: Ipv4Addr) -> Result<(), RecordError> {
        if self.owns(ip) {
            return Err(RecordError::DuplicateIp(ip));
        }
        if self.secondary_ips.len() >= MAX_SECONDARY_IPS {
            return Err(RecordError::TooManyIps);
        }
        self.secondary_ips.push(ip);
        Ok(())
    }

    /// Removes a secondary address; returns whether it was there.
    pub fn remove_secondary_ip(&mut self, ip: Ipv4Addr) -> bool {
        let before = self.secondary_ips.len();
        self.secondary_ips.retain(|&other| other != ip);
        self.secondary_ips.len() != before
    }

    /// The groups whose rules apply to it.
    pub fn security_groups(&self) -> &[GroupId] {
        &self.security_groups
    }

    /// Replaces its groups; errors on duplicates or over [`MAX_GROUPS`].
    pub fn set_security_groups(&mut self, groups: Vec<GroupId>) -> Result<(), RecordError> {
        check_groups(&groups)?;
        self.security_groups = groups;
        Ok(())
    }

    /// Whether the router drops packets it sends from, or receives for
    /// routes to, addresses it does not own. On by default; turned off for
    /// NAT instances and appliances.
    pub fn source_dest_check(&self) -> bool {
        self.source_dest_check
    }

    /// Turns the source/destination check on or off.
    pub fn set_source_dest_check(&mut self, on: bool) {
        self.source_dest_check = on;
    }

    /// A free-form description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Replaces the description; errors over [`MAX_DESCRIPTION_LEN`] bytes.
    pub fn set_description(&mut self, description: impl Into<String>) -> Result<(), RecordError> {
        let description = description.into();
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(RecordError::DescriptionTooLong);
        }
        self.description = description;
        Ok(())
    }

    /// `InUse` when attached, else `Available`.
    pub fn status(&self) -> Status {
        if self.attachment.is_some() {
            Status::InUse
        } else {
            Status::Available
        }
    }

    /// The attachment, if attached.
    pub fn attachment(&self) -> Option<&Attachment> {
        self.attachment.as_ref()
    }

    /// Marks it attached to `instance` at `attached_ms` (Unix milliseconds).
    /// This is bookkeeping; traffic flows once the router attaches it.
    pub fn attach(
        &mut self,
        instance: impl Into<String>,
        attached_ms: u64,
    ) -> Result<(), RecordError> {
        if let Some(current) = &self.attachment {
            return Err(RecordError::InUse(current.instance.clone()));
        }
        self.attachment = Some(Attachment {
            instance: instance.into(),
            attached_ms,
        });
        Ok(())
    }

    /// Marks it detached; returns the attachment it had.
    pub fn detach(&mut self) -> Result<Attachment, RecordError> {
        self.attachment.take().ok_or(RecordError::NotAttached)
    }
}

fn check_groups(groups: &[GroupId]) -> Result<(), RecordError> {
    if groups.len() > MAX_GROUPS {
        return Err(RecordError::TooManyGroups);
    }
    for (i, group) in groups.iter().enumerate() {
        if groups[..i].contains(group) {
            return Err(RecordError::DuplicateGroup(*group));
        }
    }
    Ok(())
}

/// The stored form: every field, status included.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordRepr {
    id: NicId,
    subnet: SubnetId,
    mac: Mac,
    primary_ip: Ipv4Addr,
    #[serde(default)]
    secondary_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    security_groups: Vec<GroupId>,
    source_dest_check: bool,
    #[serde(default)]
    description: String,
    status: Status,
    attachment: Option<Attachment>,
}

impl TryFrom<RecordRepr> for Record {
    type Error = RecordError;

    fn try_from(repr: RecordRepr) -> Result<Record, RecordError> {
        if !repr.mac.is_local_unicast() {
            return Err(RecordError::Mac(repr.mac));
        }
        if (repr.status == Status::InUse) != repr.attachment.is_some() {
            return Err(RecordError::Status(repr.status));
        }
        let mut record = Record {
            mac: repr.mac,
            source_dest_check: repr.source_dest_check,
            attachment: repr.attachment,
            ..Record::new(repr.id, repr.subnet, repr.primary_ip)
        };
        for ip in repr.secondary_ips {
            record.add_secondary_ip(ip)?;
        }
        record.set_security_groups(repr.security_groups)?;
        record.set_description(repr.description)?;
        Ok(record)
    }
}

impl From<Record> for RecordRepr {
    fn from(record: Record) -> RecordRepr {
        RecordRepr {
            status: record.status(),
            id: record.id,
            subnet: record.subnet,
            mac: record.mac,
            primary_ip: record.primary_ip,
            secondary_ips: record.secondary_ips,
            security_groups: record.security_groups,
            source_dest_check: record.source_dest_check,
            description: record.description,
            attachment: record.attachment,
        }
    }
}

#[cfg(test)]
mod tests;
