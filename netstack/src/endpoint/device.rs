//! The endpoint's `phy::Device`: two queues of whole IPv4 datagrams.
//!
//! There is no wire: [`Endpoint::receive`](super::Endpoint::receive) fills
//! the receive side (after screening, one datagram at a time) and
//! [`Endpoint::take_outgoing`](super::Endpoint::take_outgoing) drains the
//! transmit side. The medium is IP (no Ethernet, no ARP), the MTU the
//! router's, and every checksum is computed on transmit and verified on
//! receive in software: datagrams come from untrusted guests.

use std::collections::VecDeque;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::router::DEFAULT_MTU;

/// The queues. `transmit` refuses tokens once `tx_limit` datagrams wait, so
/// a host that stops draining holds the sockets' data back in their buffers
/// instead of growing the queue; smoltcp's replies to received datagrams (an
/// RST, an out-of-order ACK) are always queued, at most one per datagram
/// received, and so is an echo reply while [`has_room`](Queue::has_room).
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: VecDeque<Vec<u8>>,
    tx_limit: usize,
}

impl Queue {
    pub(super) fn new(tx_limit: usize) -> Queue {
        Queue {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            tx_limit: tx_limit.max(1),
        }
    }
}

impl Queue {
    /// Whether `transmit` would give a token.
    pub(super) fn has_room(&self) -> bool {
        self.tx.len() < self.tx_limit
    }
}

impl phy::Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let datagram = self.rx.pop_front()?;
        Some((RxToken(datagram), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        self.has_room().then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = DEFAULT_MTU;
        caps.max_burst_size = None;
        // `Checksum::Both` everywhere: compute on transmit, verify on receive.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// One received datagram.
pub(super) struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

/// Room for one datagram at the end of the transmit queue.
pub(super) struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut datagram = vec![0; len];
        let result = f(&mut datagram);
        self.0.push_back(datagram);
        result
    }
}
