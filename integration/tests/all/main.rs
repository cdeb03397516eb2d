//! End-to-end tests: the example guests against the real `weft` binary and
//! the `weft` library, as a user would use them. One binary, a module per
//! area.

mod chains;
mod dashboard;
mod dev;
mod durability;
mod examples;
mod gateway;
mod hostile;
mod limits;
mod mesh;
mod modules;
mod network;
mod run;
mod serve;
mod services;
mod sockets;
