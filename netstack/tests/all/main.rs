//! weft-netstack's integration tests, one binary (`cargo test -p weft-netstack --test all`).
//!
//! - `model`: the router's security-group and conntrack decisions equal a
//!   plain reference model's, over random groups, rules and traffic.
//! - `lifecycle`: records from a subnet's allocator, source check on and off,
//!   detach and re-attach.
//! - `hostile`: malformed, oversized and random datagrams and a SYN flood are
//!   dropped and counted without panicking, and tracked traffic survives.
//! - `netsim`: endpoints over the router with seeded loss, delay and
//!   reordering deliver a TCP transfer intact; a back-to-back throughput check.

mod hostile;
mod lifecycle;
mod model;
mod netsim;
mod support;
