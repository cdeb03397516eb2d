//! The pump: moves datagrams between endpoints through the router, and the
//! driver task that runs the network's timers.
//!
//! Everything happens under the network's one lock, synchronously: an
//! endpoint's output is routed and handed to its destination within the
//! same pump, so a request and its answer can cross in one call. A pump is
//! bounded in rounds, so a storm between endpoints cannot hold the lock
//! forever; what is left moves on the next pump.

use super::{Inner, Network};
use std::sync::Arc;
use std::time::Duration;
use weft_netstack::{NicId, Verdict};

impl Network {
    /// Moves datagrams until the network is quiet: every endpoint is polled,
    /// what it sends is routed, and what the router delivers is handed to
    /// the destination endpoint. Returns whether anything happened.
    pub(super) fn pump_locked(&self, inner: &mut Inner) -> bool {
        let now = self.now();
        let mut any = false;
        // Bounded: a storm between endpoints cannot hold the lock forever.
        for _ in 0..256 {
            let mut moved = false;
            let nics: Vec<NicId> = inner.endpoints.keys().copied().collect();
            for nic in nics {
                let Some(endpoint) = inner.endpoints.get_mut(&nic) else {
                    continue;
                };
                moved |= endpoint.poll(now);
                let mut outgoing = Vec::new();
                while let Some(datagram) = endpoint.take_outgoing() {
                    outgoing.push(datagram);
                }
                for datagram in outgoing {
                    moved = true;
                    self.route_datagram(inner, now, nic, &datagram);
                }
            }
            if !moved {
                break;
            }
            any = true;
        }
        any
    }

    /// Routes one datagram sent on port `from` and hands it to where the
    /// router says: an endpoint, or a gateway. A drop is counted by the
    /// router.
    pub(super) fn route_datagram(
        &self,
        inner: &mut Inner,
        now: weft_netstack::endpoint::Instant,
        from: NicId,
        datagram: &[u8],
    ) {
        if let Verdict::Deliver { to, packet } = inner.router.route(now, from, datagram) {
            if inner.gateways.contains_key(&to) {
                self.at_gateway(inner, to, packet);
            } else if let Some(destination) = inner.endpoints.get_mut(&to) {
                destination.receive(packet);
            }
        }
    }

    /// The network's clock, in smoltcp's terms.
    pub(super) fn now(&self) -> weft_netstack::endpoint::Instant {
        weft_netstack::endpoint::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Runs the network's timers (TCP retransmits, conntrack expiry) until
    /// the network is dropped.
    pub fn spawn_driver(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_expire = std::time::Instant::now();
            loop {
                let Some(network) = weak.upgrade() else {
                    return;
                };
                let next = {
                    let mut inner = network.lock();
                    if network.pump_locked(&mut inner) {
                        network.changed.notify_waiters();
                    }
                    if last_expire.elapsed() >= Duration::from_secs(1) {
                        let now = network.now();
                        inner.router.expire(now);
                        last_expire = std::time::Instant::now();
                    }
                    let now = network.now();
                    inner
                        .endpoints
                        .values_mut()
                        .filter_map(|e| e.poll_at(now))
                        .min()
                        .map(|at| {
                            if at <= now {
                                Duration::ZERO
                            } else {
                                Duration::from_micros((at - now).total_micros())
                            }
                        })
                };
                drop(network);
                let sleep = next
                    .unwrap_or(Duration::from_millis(50))
                    .clamp(Duration::from_millis(1), Duration::from_millis(50));
                tokio::time::sleep(sleep).await;
            }
        });
    }
}
