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
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "connection stayed open");
    server.shutdown().await.unwrap();
}
