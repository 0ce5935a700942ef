//! SIP over UDP: one receive loop per socket.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use pbx_core::{Inbound, Peer, TransportKind};
use tokio::net::UdpSocket;

use super::io::Io;

/// The largest UDP payload.
const DATAGRAM_MAX: usize = 64 * 1024;

/// Receives datagrams until the server stops receiving.
pub(crate) async fn receive(io: Arc<Io>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let received = tokio::select! {
            () = io.stop_receiving.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, from) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let datagram = &buf[..len];
        if !looks_like_sip(datagram) {
            continue;
        }
        io.dispatch(Inbound::new(
            Peer {
                transport: TransportKind::Udp,
                addr: from,
                conn: None,
            },
            local,
            Bytes::copy_from_slice(datagram),
        ));
    }
}

/// A SIP message starts with a method or `SIP/2.0`; keep-alive CRLFs, STUN
/// packets and other noise are dropped before any work is done on them.
fn looks_like_sip(datagram: &[u8]) -> bool {
    datagram.len() >= 4 && datagram[0].is_ascii_alphabetic()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_not_sip() {
        assert!(looks_like_sip(b"OPTIONS sip:a SIP/2.0\r\n\r\n"));
        assert!(looks_like_sip(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(!looks_like_sip(b"\r\n\r\n"));
        assert!(!looks_like_sip(b"\x00\x01\x00\x00"));
        assert!(!looks_like_sip(b""));
    }
}
