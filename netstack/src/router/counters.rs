//! Per-port traffic counters and the reasons the router drops packets.

use core::fmt;

/// Why the router dropped a packet. Each drop is counted once, on one port:
/// the receiving port for [`IngressDenied`](DropReason::IngressDenied),
/// [`DestinationCheck`](DropReason::DestinationCheck) and a full receiving
/// table, the sending port for everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The sending port is not attached (e.g. a packet queued before detach).
    /// Counted only in the router's totals.
    UnknownPort,
    /// Longer than the router's MTU.
    TooLarge,
    /// Not a well-formed IPv4 datagram (see [`flow`](crate::flow)).
    Malformed,
    /// An IPv4 fragment; the network does not fragment, so none are forwarded.
    Fragmented,
    /// The source is not an address of the sending port, whose check is on.
    SourceCheck,
    /// No attached port holds the destination and no route covers it.
    NoRoute,
    /// Routed to a port that does not own the destination, whose check is on.
    DestinationCheck,
    /// The sending port's egress rules do not allow a new flow.
    EgressDenied,
    /// The receiving port's ingress rules do not allow a new flow.
    IngressDenied,
    /// A new flow was allowed but a connection tracking table was full.
    ConntrackFull,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::UnknownPort,
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::Fragmented,
        DropReason::SourceCheck,
        DropReason::NoRoute,
        DropReason::DestinationCheck,
        DropReason::EgressDenied,
        DropReason::IngressDenied,
        DropReason::ConntrackFull,
    ];

    /// A stable snake_case name, for metrics and the API.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::UnknownPort => "unknown_port",
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::Fragmented => "fragmented",
            DropReason::SourceCheck => "source_check",
            DropReason::NoRoute => "no_route",
            DropReason::DestinationCheck => "destination_check",
            DropReason::EgressDenied => "egress_denied",
            DropReason::IngressDenied => "ingress_denied",
            DropReason::ConntrackFull => "conntrack_full",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One port's traffic, seen from its instance: `tx` is what the instance
/// sent and the router delivered, `rx` what the router delivered to it.
/// Counters wrap at 2^64.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets sent and delivered.
    pub tx_packets: u64,
    /// Their bytes (IPv4 datagrams, headers included).
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Packets dropped for `reason`, counted on this port.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().fold(0, |sum, n| sum.wrapping_add(*n))
    }

    /// Every reason with its count, zeros included.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&reason| (reason, self.drops(reason)))
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        let n = &mut self.drops[reason.index()];
        *n = n.wrapping_add(1);
    }

    pub(crate) fn count_tx(&mut self, bytes: usize) {
        self.tx_packets = self.tx_packets.wrapping_add(1);
        self.tx_bytes = self.tx_bytes.wrapping_add(bytes as u64);
    }

    pub(crate) fn count_rx(&mut self, bytes: usize) {
        self.rx_packets = self.rx_packets.wrapping_add(1);
        self.rx_bytes = self.rx_bytes.wrapping_add(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_counters() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut c = Counters::default();
        c.count_drop(DropReason::NoRoute);
        c.count_drop(DropReason::NoRoute);
        c.count_drop(DropReason::TooLarge);
        assert_eq!(c.drops(DropReason::NoRoute), 2);
        assert_eq!(c.dropped(), 3);
        assert_eq!(c.drop_counts().filter(|(_, n)| *n > 0).count(), 2);
        c.count_tx(100);
        c.count_rx(40);
        assert_eq!(
            (c.tx_packets, c.tx_bytes, c.rx_packets, c.rx_bytes),
            (1, 100, 1, 40)
        );
        assert_eq!(DropReason::ConntrackFull.to_string(), "conntrack_full");
    }
}
