//! `weft-netstack`: the virtual network weft instances live on.
//!
//! An L3 network like a cloud VPC, all in memory: a router forwards raw IPv4
//! datagrams between interfaces by destination address. There is no Ethernet,
//! no ARP and no broadcast domain. What exists today is the pure core:
//!
//! - [`id`]: `subnet-…`, `sg-…` and `nic-…` identifiers, from caller entropy.
//! - [`cidr`]: strictly parsed IPv4 blocks.
//! - [`subnet`]: subnets (/8 to /30, gateway at the first address) and the
//!   [`Allocator`] of their host addresses.
//! - [`flow`]: parsing a datagram into what filtering needs; never panics.
//! - [`secgroup`]: security groups, their rules and their evaluation.
//! - [`conntrack`]: bounded, timed connection tracking per interface, so that
//!   replies pass without rules and rule changes do not cut flows.
//! - [`record`]: interface records (NICs), persisted by the host as JSON.
//! - [`router`]: ports (attached records), source/destination checks,
//!   egress and ingress filtering, per-port counters.
//! - [`packet`]: building well-formed datagrams, for tests and fuzzing.
//!
//! Everything here is synchronous and deterministic: time is passed in as a
//! [`smoltcp::time::Instant`], randomness as caller-provided entropy, and
//! packets as byte slices. The host moves bytes between the router and the
//! instances; this crate has no wasmtime, no async runtime and no HTTP.
//!
//! [`endpoint`]: the endpoints, a smoltcp interface per attached record,
//! driven by the host, serving guests' TCP and UDP sockets and answering
//! ping. Not here yet, and planned in DESIGN.md: the gateway (port forwards,
//! outbound NAT, the TUN bridge). The gateway address of each subnet is
//! reserved for it; until it exists, datagrams to it drop as
//! [`NoRoute`](router::DropReason::NoRoute).
//! [`Router::set_route`](router::Router::set_route) and the destination
//! check are the hook for NAT instances.

pub mod cidr;
pub mod conntrack;
pub mod endpoint;
pub mod flow;
pub mod id;
pub mod packet;
pub mod record;
pub mod router;
pub mod secgroup;
pub mod subnet;

pub use cidr::Cidr;
pub use conntrack::ConnTrack;
pub use endpoint::Endpoint;
pub use flow::Flow;
pub use id::{GroupId, NicId, SubnetId};
pub use record::Record;
pub use router::{DropReason, Router, Verdict};
pub use secgroup::{Direction, SecurityGroup};
pub use subnet::{Allocator, Subnet};
