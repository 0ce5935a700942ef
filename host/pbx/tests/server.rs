//! The I/O layer over real sockets on 127.0.0.1 (SIP behaviour itself is tested
//! end to end at the workspace level).

use std::net::SocketAddr;
use std::time::Duration;

use pbx::server::{ServeOptions, start};
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn options() -> (ServeOptions, Store) {
    let store = Store::open_in_memory().await.unwrap();
    let mut opts = ServeOptions::new(vec![any()], vec![any()], Default::default());
    opts.shards = 2;
    (opts, store)
}

#[tokio::test]
async fn starts_on_ephemeral_ports_and_shuts_down_cleanly() {
    let (opts, store) = options().await;
    let server = start(opts, store).await.unwrap();
    let addrs = server.addrs().clone();
    assert_eq!(addrs.udp.len(), 1);
    assert_eq!(addrs.tcp.len(), 1);
    assert_ne!(addrs.udp[0].port(), 0);
    assert_ne!(addrs.tcp[0].port(), 0);
    server.shutdown().await.unwrap();
    // The listener is gone once shutdown returns.
    assert!(TcpStream::connect(addrs.tcp[0]).await.is_err());
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_a_pong() {
    let (opts, store) = options().await;
    let server = start(opts, store).await.unwrap();
    let mut stream = TcpStream::connect(server.addrs().tcp[0]).await.unwrap();
    stream.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut pong))
        .await
        .expect("no pong")
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_garbage_closes_the_connection() {
    let (opts, store) = options().await;
    let server = start(opts, store).await.unwrap();
    let mut stream = TcpStream::connect(server.addrs().tcp[0]).await.unwrap();
    // A header block far beyond the 64 KiB message limit, never terminated.
    let junk = vec![b'a'; 200 * 1024];
    let _ = stream.write_all(&junk).await;
    let closed = closed_by_server(&mut stream).await;
    assert!(closed, "connection stayed open");
    server.shutdown().await.unwrap();
}

/// Reads until the server closes the connection; `false` if it stays open.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let (mut opts, store) = options().await;
    opts.limits.tcp_idle_timeout = Duration::from_millis(50);
    let server = start(opts, store).await.unwrap();
    let mut stream = TcpStream::connect(server.addrs().tcp[0]).await.unwrap();
    assert!(closed_by_server(&mut stream).await);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn connections_per_source_are_capped() {
    let (mut opts, store) = options().await;
    opts.limits.max_connections_per_source = 1;
    let server = start(opts, store).await.unwrap();
    let addr = server.addrs().tcp[0];
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut second).await);
    // The first one is still served.
    first.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), first.read_exact(&mut pong))
        .await
        .expect("no pong")
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    server.shutdown().await.unwrap();
}
