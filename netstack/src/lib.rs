//! `weft-netstack`: the virtual network weft instances live on.
//!
//! An L3 network like a cloud VPC, all in memory: subnets, security groups
//! with connection tracking, interface records (NICs) that attach to and
//! detach from instances, a router that forwards IP packets between them,
//! smoltcp endpoints, and a gateway to the host (port forwards, NAT, TUN).
//!
//! It has no wasmtime and no API code: time is passed in and I/O happens at
//! devices, so every part can be tested and fuzzed on its own. The crate is a
//! placeholder until the virtual-network work lands; the host does not use it
//! yet.
