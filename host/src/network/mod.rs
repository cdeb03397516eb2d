//! The host's virtual network: subnets, security groups and interface
//! records (NICs), kept durably in the store and mirrored into the netstack
//! router, where attached records are ports.
//!
//! Every change is written to the store first and applied in memory only
//! once the write is committed, under one lock, so the router always agrees
//! with what a restart would load. Records are attached to instances by id
//! (a service's id is stable across its restarts).
//!
//! An attached record is also an endpoint: a smoltcp interface holding the
//! record's addresses, serving the instance's sockets ([`sockets`]).

pub mod gateway;
mod pump;
pub mod sockets;

pub use gateway::{Forward, ForwardRequest, Gateway, GatewayInfo, Proto};
pub use sockets::{GuestNet, NetError, Wait};

use crate::store::{Kind, Store, StoreError};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use weft_netstack::endpoint::{Endpoint, Limits as EndpointLimits};
use weft_netstack::router::{Config as RouterConfig, Counters};
use weft_netstack::secgroup::Rule;
use weft_netstack::{
    Allocator, Cidr, Direction, GroupId, NicId, Record, Router, SecurityGroup, Subnet, SubnetId,
};

/// Why a network operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No such object.
    #[error("no {kind} `{id}`")]
    NotFound { kind: &'static str, id: String },
    /// The request conflicts with the current state (in use, overlapping).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_found(kind: &'static str, id: impl ToString) -> NetworkError {
    NetworkError::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn invalid(error: impl ToString) -> NetworkError {
    NetworkError::Invalid(error.to_string())
}

/// What a new interface record asks for.
#[derive(Clone, Debug, Default)]
pub struct NicRequest {
    /// Its subnet.
    pub subnet: String,
    /// Its security groups (none: it gets no ingress at all).
    pub security_groups: Vec<String>,
    /// A primary address; allocated from the subnet when absent.
    pub ip: Option<Ipv4Addr>,
    /// The source/destination check (default on).
    pub source_dest_check: Option<bool>,
    /// Free text.
    pub description: Option<String>,
}

/// The name of the group every host has: no ingress, all egress. A record
/// created without groups gets it (a record with no group at all could send
/// nothing).
pub const DEFAULT_GROUP: &str = "default";

/// The network of one host.
#[derive(Debug)]
pub struct Network {
    store: Arc<Store>,
    inner: Mutex<Inner>,
    /// Notified whenever a pump moved something: waiting sockets retry.
    changed: tokio::sync::Notify,
    /// Time zero of the network's clock.
    epoch: std::time::Instant,
    /// Where NAT may go on the host.
    egress_allow: std::sync::RwLock<Vec<Cidr>>,
    /// How long a gateway's TCP connection may carry nothing either way
    /// before it is closed, in ms (see [`gateway::TCP_IDLE`]).
    tcp_idle_ms: std::sync::atomic::AtomicU64,
    /// Gateways' devices, forwards' tasks, NAT's queue.
    running: Mutex<gateway::Running>,
}

#[derive(Debug)]
struct Inner {
    subnets: BTreeMap<SubnetId, (Subnet, Allocator)>,
    groups: BTreeMap<GroupId, SecurityGroup>,
    nics: BTreeMap<NicId, Record>,
    router: Router,
    /// One endpoint per attached record.
    endpoints: BTreeMap<NicId, Endpoint>,
    /// Guests' sockets, by instance.
    instances: std::collections::HashMap<String, sockets::InstanceSockets>,
    /// Gateways' ports, by their records.
    gateways: BTreeMap<NicId, gateway::Port>,
}

impl Inner {
    /// Brings up the endpoint of an attached record.
    fn start_endpoint(&mut self, record: &Record, now: weft_netstack::endpoint::Instant) {
        let Some((subnet, _)) = self.subnets.get(&record.subnet()) else {
            return;
        };
        let ips: Vec<Ipv4Addr> = record.ips().collect();
        let endpoint = Endpoint::new(
            &ips,
            subnet.cidr().prefix_len(),
            subnet.gateway(),
            EndpointLimits::default(),
            now,
        );
        self.endpoints.insert(record.id(), endpoint);
        if let Some(attachment) = record.attachment() {
            let instance = attachment.instance.clone();
            self.extend_wildcards(&instance, record.id());
        }
    }

    /// Takes down a detached record's endpoint: its connections are reset.
    fn stop_endpoint(&mut self, nic: NicId) {
        if let Some(mut endpoint) = self.endpoints.remove(&nic) {
            endpoint.abort_all();
        }
        self.forget_record(nic);
    }
}

/// Refuses to change a gateway's record by hand.
fn refuse_managed(inner: &Inner, nic: NicId) -> Result<(), NetworkError> {
    match Network::managed_by(inner, nic) {
        Some(gateway) => Err(NetworkError::Conflict(format!(
            "{nic} is the interface of {gateway}: it is managed with the gateway"
        ))),
        None => Ok(()),
    }
}

/// Fresh entropy for ids: a per-process random key hashed with a counter
/// and the time.
fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = STATE.get_or_init(Default::default).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u128(crate::activity::now_ms() as u128);
    hasher.finish()
}

impl Network {
    /// Loads every subnet, group and record from the store and rebuilds the
    /// router: attached records are ports again.
    pub fn open(store: Arc<Store>) -> Result<Network, NetworkError> {
        let mut inner = Inner {
            subnets: BTreeMap::new(),
            groups: BTreeMap::new(),
            nics: BTreeMap::new(),
            router: Router::new(RouterConfig::default()),
            endpoints: BTreeMap::new(),
            instances: Default::default(),
            gateways: BTreeMap::new(),
        };
        let epoch = std::time::Instant::now();
        let now = weft_netstack::endpoint::Instant::from_micros(0);
        for subnet in store.all_of::<Subnet>(Kind::Subnet)? {
            let allocator = Allocator::new(&subnet);
            inner.subnets.insert(subnet.id(), (subnet, allocator));
        }
        for group in store.all_of::<SecurityGroup>(Kind::Group)? {
            inner.router.set_group(group.clone());
            inner.groups.insert(group.id(), group);
        }
        for record in store.all_of::<Record>(Kind::Nic)? {
            if let Some((_, allocator)) = inner.subnets.get_mut(&record.subnet()) {
                for ip in record.ips() {
                    let _ = allocator.reserve(ip);
                }
            }
            if record.attachment().is_some() {
                match inner.router.attach(&record) {
                    Ok(()) => inner.start_endpoint(&record, now),
                    Err(error) => {
                        tracing::warn!(nic = %record.id(), "could not restore the attachment: {error}")
                    }
                }
            }
            inner.nics.insert(record.id(), record);
        }
        let network = Network {
            store,
            inner: Mutex::new(inner),
            changed: tokio::sync::Notify::new(),
            epoch,
            egress_allow: Default::default(),
            tcp_idle_ms: (gateway::TCP_IDLE.as_millis() as u64).into(),
            running: Default::default(),
        };
        if network.default_group().is_none() {
            network.create_group(DEFAULT_GROUP, Vec::new(), None)?;
        }
        Ok(network)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a subnet; refuses one that overlaps another.
    pub fn create_subnet(&self, cidr: &str, name: &str) -> Result<Subnet, NetworkError> {
        let cidr: Cidr = cidr.parse().map_err(invalid)?;
        let subnet = Subnet::new(SubnetId::from_entropy(entropy()), cidr, name).map_err(invalid)?;
        let mut inner = self.lock();
        if let Some((other, _)) = inner.subnets.values().find(|(other, _)| {
            other.cidr().contains_cidr(&cidr) || cidr.contains_cidr(&other.cidr())
        }) {
            return Err(NetworkError::Conflict(format!(
                "{cidr} overlaps {} ({})",
                other.cidr(),
                other.id()
            )));
        }
        self.store
            .put(Kind::Subnet, &subnet.id().to_string(), &subnet)?;
        let allocator = Allocator::new(&subnet);
        inner
            .subnets
            .insert(subnet.id(), (subnet.clone(), allocator));
        Ok(subnet)
    }

    /// Every subnet.
    pub fn subnets(&self) -> Vec<Subnet> {
        self.lock()
            .subnets
            .values()
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Deletes a subnet that holds no interface records.
    pub fn delete_subnet(&self, id: &str) -> Result<(), NetworkError> {
        let id: SubnetId = id.parse().map_err(|_| not_found("subnet", id))?;
        let mut inner = self.lock();
        if !inner.subnets.contains_key(&id) {
            return Err(not_found("subnet", id));
        }
        if let Some(nic) = inner.nics.values().find(|r| r.subnet() == id) {
            return Err(NetworkError::Conflict(format!(
                "{id} still holds {}",
                nic.id()
            )));
        }
        self.store.remove(Kind::Subnet, &id.to_string())?;
        inner.subnets.remove(&id);
        Ok(())
    }

    /// Creates a security group. Without `egress`, it allows all egress.
    pub fn create_group(
        &self,
        name: &str,
        ingress: Vec<Rule>,
        egress: Option<Vec<Rule>>,
    ) -> Result<SecurityGroup, NetworkError> {
        let mut group =
            SecurityGroup::new(GroupId::from_entropy(entropy()), name).map_err(invalid)?;
        if let Some(egress) = egress {
            for rule in group.rules(Direction::Egress).to_vec() {
                group.remove_rule(Direction::Egress, &rule);
            }
            for rule in egress {
                group.add_rule(Direction::Egress, rule).map_err(invalid)?;
            }
        }
        for rule in ingress {
            group.add_rule(Direction::Ingress, rule).map_err(invalid)?;
        }
        let mut inner = self.lock();
        if name == DEFAULT_GROUP && inner.groups.values().any(|g| g.name() == DEFAULT_GROUP) {
            return Err(NetworkError::Conflict(
                "there is already a group named `default`".into(),
            ));
        }
        self.check_peer_groups(&inner, &group)?;
        self.store
            .put(Kind::Group, &group.id().to_string(), &group)?;
        inner.router.set_group(group.clone());
        inner.groups.insert(group.id(), group.clone());
        Ok(group)
    }

    fn check_peer_groups(&self, inner: &Inner, group: &SecurityGroup) -> Result<(), NetworkError> {
        for direction in [Direction::Ingress, Direction::Egress] {
            for rule in group.rules(direction) {
                if let weft_netstack::secgroup::Peer::Group(peer) = rule.peer()
                    && peer != group.id()
                    && !inner.groups.contains_key(&peer)
                {
                    return Err(not_found("security group", peer));
                }
            }
        }
        Ok(())
    }

    /// The host's default group.
    pub fn default_group(&self) -> Option<GroupId> {
        self.lock()
            .groups
            .values()
            .find(|g| g.name() == DEFAULT_GROUP)
            .map(|g| g.id())
    }

    /// Every security group.
    pub fn groups(&self) -> Vec<SecurityGroup> {
        self.lock().groups.values().cloned().collect()
    }

    /// One security group.
    pub fn group(&self, id: &str) -> Result<SecurityGroup, NetworkError> {
        let gid: GroupId = id.parse().map_err(|_| not_found("security group", id))?;
        self.lock()
            .groups
            .get(&gid)
            .cloned()
            .ok_or_else(|| not_found("security group", id))
    }

    /// Adds (`add`) or removes a rule. New flows see the change at once;
    /// tracked flows continue until they expire.
    pub fn change_rule(
        &self,
        id: &str,
        direction: Direction,
        rule: Rule,
        add: bool,
    ) -> Result<SecurityGroup, NetworkError> {
        let gid: GroupId = id.parse().map_err(|_| not_found("security group", id))?;
        let mut inner = self.lock();
        let mut group = inner
            .groups
            .get(&gid)
            .cloned()
            .ok_or_else(|| not_found("security group", id))?;
        if add {
            group.add_rule(direction, rule).map_err(invalid)?;
            self.check_peer_groups(&inner, &group)?;
        } else if !group.remove_rule(direction, &rule) {
            return Err(not_found("rule", rule));
        }
        self.store.put(Kind::Group, &gid.to_string(), &group)?;
        inner.router.set_group(group.clone());
        inner.groups.insert(gid, group.clone());
        Ok(group)
    }

    /// Deletes a group no record uses.
    pub fn delete_group(&self, id: &str) -> Result<(), NetworkError> {
        let gid: GroupId = id.parse().map_err(|_| not_found("security group", id))?;
        let mut inner = self.lock();
        if !inner.groups.contains_key(&gid) {
            return Err(not_found("security group", id));
        }
        if let Some(nic) = inner
            .nics
            .values()
            .find(|r| r.security_groups().contains(&gid))
        {
            return Err(NetworkError::Conflict(format!(
                "{gid} is used by {}",
                nic.id()
            )));
        }
        self.store.remove(Kind::Group, &gid.to_string())?;
        inner.router.remove_group(gid);
        inner.groups.remove(&gid);
        Ok(())
    }

    fn parse_groups(inner: &Inner, ids: &[String]) -> Result<Vec<GroupId>, NetworkError> {
        ids.iter()
            .map(|id| {
                id.parse::<GroupId>()
                    .ok()
                    .filter(|gid| inner.groups.contains_key(gid))
                    .ok_or_else(|| not_found("security group", id))
            })
            .collect()
    }

    /// Creates an interface record, detached. Without groups it gets the
    /// default group.
    pub fn create_nic(&self, mut request: NicRequest) -> Result<Record, NetworkError> {
        if request.security_groups.is_empty()
            && let Some(default) = self.default_group()
        {
            request.security_groups.push(default.to_string());
        }
        let subnet: SubnetId = request
            .subnet
            .parse()
            .map_err(|_| not_found("subnet", &request.subnet))?;
        let mut inner = self.lock();
        let groups = Self::parse_groups(&inner, &request.security_groups)?;
        let (_, allocator) = inner
            .subnets
            .get_mut(&subnet)
            .ok_or_else(|| not_found("subnet", subnet))?;
        let ip = match request.ip {
            Some(ip) => {
                allocator
                    .reserve(ip)
                    .map_err(|e| NetworkError::Conflict(format!("{ip}: {e}")))?;
                ip
            }
            None => allocator
                .allocate()
                .map_err(|e| NetworkError::Conflict(e.to_string()))?,
        };
        let build = || -> Result<Record, NetworkError> {
            let mut record = Record::new(NicId::from_entropy(entropy()), subnet, ip);
            record
                .set_security_groups(groups.clone())
                .map_err(invalid)?;
            record.set_source_dest_check(request.source_dest_check.unwrap_or(true));
            if let Some(description) = &request.description {
                record
                    .set_description(description.clone())
                    .map_err(invalid)?;
            }
            self.store
                .put(Kind::Nic, &record.id().to_string(), &record)?;
            Ok(record)
        };
        match build() {
            Ok(record) => {
                inner.nics.insert(record.id(), record.clone());
                Ok(record)
            }
            Err(error) => {
                if let Some((_, allocator)) = inner.subnets.get_mut(&subnet) {
                    allocator.release(ip);
                }
                Err(error)
            }
        }
    }

    /// Every record, with its port's counters when attached.
    pub fn nics(&self) -> Vec<(Record, Option<Counters>)> {
        let inner = self.lock();
        inner
            .nics
            .values()
            .map(|r| (r.clone(), inner.router.counters(r.id()).cloned()))
            .collect()
    }

    /// One record, with its port's counters when attached.
    pub fn nic(&self, id: &str) -> Result<(Record, Option<Counters>), NetworkError> {
        let nid: NicId = id.parse().map_err(|_| not_found("interface", id))?;
        let inner = self.lock();
        let record = inner
            .nics
            .get(&nid)
            .cloned()
            .ok_or_else(|| not_found("interface", id))?;
        Ok((record, inner.router.counters(nid).cloned()))
    }

    /// Applies `change` to a record, stores it, and updates the router.
    fn modify(
        &self,
        id: &str,
        change: impl FnOnce(&mut Inner, &mut Record) -> Result<(), NetworkError>,
    ) -> Result<Record, NetworkError> {
        let nid: NicId = id.parse().map_err(|_| not_found("interface", id))?;
        let mut inner = self.lock();
        let mut record = inner
            .nics
            .get(&nid)
            .cloned()
            .ok_or_else(|| not_found("interface", id))?;
        refuse_managed(&inner, nid)?;
        change(&mut inner, &mut record)?;
        self.store.put(Kind::Nic, &nid.to_string(), &record)?;
        let now = self.now();
        let attached_to = |r: &Record| r.attachment().map(|a| a.instance.clone());
        let before = inner.nics.get(&nid).and_then(attached_to);
        match (record.attachment().is_some(), inner.router.is_attached(nid)) {
            (true, true) => {
                inner.router.update(&record).map_err(invalid)?;
                if let Some(endpoint) = inner.endpoints.get_mut(&nid) {
                    endpoint.set_addresses(&record.ips().collect::<Vec<_>>());
                }
            }
            (true, false) => {
                inner.router.attach(&record).map_err(invalid)?;
                if inner.gateways.contains_key(&nid) {
                    // A gateway's port keeps no table (see `bring_up`).
                    inner.router.set_tracking(nid, false);
                }
            }
            (false, true) => {
                inner.router.detach(nid);
            }
            (false, false) => {}
        }
        inner.nics.insert(nid, record.clone());
        if before != attached_to(&record) {
            if before.is_some() {
                inner.stop_endpoint(nid);
            }
            if record.attachment().is_some() {
                inner.start_endpoint(&record, now);
            }
        }
        if self.pump_locked(&mut inner) {
            self.changed.notify_waiters();
        }
        Ok(record)
    }

    /// Attaches a record to `instance`: traffic to its addresses reaches
    /// that instance from now on.
    pub fn attach(&self, id: &str, instance: &str) -> Result<Record, NetworkError> {
        self.modify(id, |_, record| {
            record
                .attach(instance, crate::activity::now_ms())
                .map_err(|e| NetworkError::Conflict(e.to_string()))
        })
    }

    /// Detaches a record: traffic to its addresses is dropped (no route) and
    /// the instance's tracked flows on it end.
    pub fn detach(&self, id: &str) -> Result<Record, NetworkError> {
        self.modify(id, |_, record| {
            record
                .detach()
                .map(drop)
                .map_err(|e| NetworkError::Conflict(e.to_string()))
        })
    }

    /// Detaches every record `instance` holds (when it goes away).
    pub fn detach_instance(&self, instance: &str) -> Result<usize, NetworkError> {
        let held: Vec<String> = self
            .lock()
            .nics
            .values()
            .filter(|r| r.attachment().is_some_and(|a| a.instance == instance))
            .map(|r| r.id().to_string())
            .collect();
        for id in &held {
            self.detach(id)?;
        }
        Ok(held.len())
    }

    /// An instance ended: its sockets are closed (its records stay attached:
    /// a restarted service finds them again).
    pub fn instance_ended(&self, instance: &str) {
        let mut inner = self.lock();
        inner.drop_instance(instance);
        if self.pump_locked(&mut inner) {
            self.changed.notify_waiters();
        }
    }

    /// Replaces a record's security groups.
    pub fn set_groups(&self, id: &str, groups: &[String]) -> Result<Record, NetworkError> {
        self.modify(id, |inner, record| {
            let groups = Self::parse_groups(inner, groups)?;
            record.set_security_groups(groups).map_err(invalid)
        })
    }

    /// Deletes a detached record and frees its addresses.
    pub fn delete_nic(&self, id: &str) -> Result<(), NetworkError> {
        let nid: NicId = id.parse().map_err(|_| not_found("interface", id))?;
        let mut inner = self.lock();
        let record = inner
            .nics
            .get(&nid)
            .cloned()
            .ok_or_else(|| not_found("interface", id))?;
        refuse_managed(&inner, nid)?;
        if let Some(attachment) = record.attachment() {
            return Err(NetworkError::Conflict(format!(
                "{nid} is attached to {}: detach it first",
                attachment.instance
            )));
        }
        self.store.remove(Kind::Nic, &nid.to_string())?;
        if let Some((_, allocator)) = inner.subnets.get_mut(&record.subnet()) {
            for ip in record.ips() {
                allocator.release(ip);
            }
        }
        inner.nics.remove(&nid);
        Ok(())
    }
}
