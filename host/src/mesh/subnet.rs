//! The mesh subnet: an ephemeral subnet with one interface record per
//! rank, so ranks reach each other over the SDK's TCP and UDP sockets by
//! IP (`mesh::addr(rank)`), through the host's ordinary router.
//!
//! The subnet takes the first free block of `10.244.0.0/16` (a /24, or a
//! /21 for a job started with more than 250 ranks); a security group lets
//! every protocol in from the subnet itself. Ranks that join later get
//! their records on the same subnet ([`MeshNet::add`]) while it has room. Everything is created through the
//! [`Network`] API, so it shows in the API and the dashboard like any other
//! subnet while the mesh lives, and is removed with the mesh.

use super::MeshId;
use crate::network::{GuestNet, Network, NetworkError, NicRequest};
use crate::runtime::Cancel;
use std::net::Ipv4Addr;
use std::sync::Arc;
use weft_netstack::Cidr;
use weft_netstack::secgroup::{Peer, Rule};

/// A mesh's subnet, its group and its records.
#[derive(Debug)]
pub struct MeshNet {
    network: Arc<Network>,
    /// The mesh's id, which names the subnet and the group.
    name: String,
    subnet: String,
    cidr: String,
    group: String,
    /// `(nic, instance)` per rank.
    nics: Vec<(String, String)>,
}

impl MeshNet {
    /// Creates the subnet and the group, sized for `ranks` ranks. On an
    /// error, whatever was created is removed again.
    pub fn create(
        network: Arc<Network>,
        mesh: &MeshId,
        ranks: u32,
    ) -> Result<MeshNet, NetworkError> {
        let (prefix, step) = if ranks <= 250 { (24, 1) } else { (21, 8) };
        let name = mesh.to_string();
        let mut subnet = None;
        for third in (0..=255u32).step_by(step) {
            let cidr = format!("10.244.{third}.0/{prefix}");
            match network.create_subnet(&cidr, &name) {
                Ok(created) => {
                    subnet = Some(created);
                    break;
                }
                Err(NetworkError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        let subnet = subnet.ok_or_else(|| {
            NetworkError::Conflict("no free block in 10.244.0.0/16 for a mesh subnet".into())
        })?;
        let cidr: Cidr = subnet.cidr();
        let mut net = MeshNet {
            network: network.clone(),
            name: name.clone(),
            subnet: subnet.id().to_string(),
            cidr: cidr.to_string(),
            group: String::new(),
            nics: Vec::new(),
        };
        match network.create_group(&name, vec![Rule::all(Peer::Cidr(cidr))], None) {
            Ok(group) => {
                net.group = group.id().to_string();
                Ok(net)
            }
            Err(error) => {
                net.remove();
                Err(error)
            }
        }
    }

    /// Creates one record per instance (in order), each attached to its
    /// instance; returns their addresses. On an error, the records created
    /// by this call are removed again.
    pub fn add(&mut self, instances: &[String]) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let network = self.network.clone();
        let before = self.nics.len();
        let mut addrs = Vec::with_capacity(instances.len());
        let built = (|| {
            for instance in instances {
                let record = network.create_nic(NicRequest {
                    subnet: self.subnet.clone(),
                    security_groups: vec![self.group.clone()],
                    description: Some(format!("{} {instance}", self.name)),
                    ..NicRequest::default()
                })?;
                self.nics.push((record.id().to_string(), instance.clone()));
                addrs.push(record.primary_ip());
                network.attach(&record.id().to_string(), instance)?;
            }
            Ok::<_, NetworkError>(())
        })();
        match built {
            Ok(()) => Ok(addrs),
            Err(error) => {
                for (nic, _) in self.nics.drain(before..) {
                    let _ = network.detach(&nic);
                    if let Err(error) = network.delete_nic(&nic) {
                        tracing::warn!(%nic, "removing a mesh interface: {error}");
                    }
                }
                Err(error)
            }
        }
    }

    /// The subnet's id.
    pub fn subnet_id(&self) -> String {
        self.subnet.clone()
    }

    /// The subnet's CIDR.
    pub fn cidr(&self) -> String {
        self.cidr.clone()
    }

    /// The sockets handle of one rank's instance.
    pub fn guest_net(&self, instance: &str, cancel: Cancel) -> GuestNet {
        GuestNet::new(self.network.clone(), instance, Some(cancel))
    }

    /// A rank's instance ended: its sockets are closed.
    pub fn instance_ended(&self, instance: &str) {
        self.network.instance_ended(instance);
    }

    /// Detaches and deletes the records, then the group and the subnet.
    pub fn remove(self) {
        let network = &self.network;
        for (nic, instance) in &self.nics {
            network.instance_ended(instance);
            let detached = network.detach(nic).map(drop);
            if let Err(error) = detached.and_then(|()| network.delete_nic(nic)) {
                tracing::warn!(%nic, "removing a mesh interface: {error}");
            }
        }
        if !self.group.is_empty()
            && let Err(error) = network.delete_group(&self.group)
        {
            tracing::warn!(group = %self.group, "removing a mesh security group: {error}");
        }
        if let Err(error) = network.delete_subnet(&self.subnet) {
            tracing::warn!(subnet = %self.subnet, "removing a mesh subnet: {error}");
        }
    }
}

/// Whether `name` is a mesh's (`mesh-` and 16 hex digits).
fn is_mesh_name(name: &str) -> bool {
    name.strip_prefix("mesh-")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes what meshes of an earlier run of the host left in the store
/// (a host that stopped without tearing its meshes down): no mesh outlives
/// its host, so every mesh subnet, with its records and group, is stale.
/// Returns how many subnets were removed.
pub fn remove_leftovers(network: &Network) -> usize {
    let stale: Vec<_> = network
        .subnets()
        .into_iter()
        .filter(|s| is_mesh_name(s.name()))
        .collect();
    for subnet in &stale {
        for (record, _) in network.nics() {
            if record.subnet() != subnet.id() {
                continue;
            }
            let id = record.id().to_string();
            if record.attachment().is_some()
                && let Err(error) = network.detach(&id)
            {
                tracing::warn!(nic = %id, "removing a stale mesh interface: {error}");
            }
            if let Err(error) = network.delete_nic(&id) {
                tracing::warn!(nic = %id, "removing a stale mesh interface: {error}");
            }
        }
        for group in network.groups() {
            if group.name() == subnet.name()
                && let Err(error) = network.delete_group(&group.id().to_string())
            {
                tracing::warn!(group = %group.id(), "removing a stale mesh group: {error}");
            }
        }
        if let Err(error) = network.delete_subnet(&subnet.id().to_string()) {
            tracing::warn!(subnet = %subnet.id(), "removing a stale mesh subnet: {error}");
        }
    }
    stale.len()
}
