//! The in-process reference: a tokio server with no isolation and no spawn,
//! answering the same bytes as the hello-http guest. What "a connection for
//! the price of a function call" is measured against.
//!
//! `native ADDR`

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).expect("usage: native ADDR");
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening service=native addr={}", listener.local_addr()?);
    loop {
        let (mut s, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            let mut seen = Vec::new();
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 65536 {
                            break;
                        }
                    }
                }
            }
            let _ = s.write_all(RESPONSE).await;
            let _ = s.shutdown().await;
            let _ = s.read(&mut buf).await;
        });
    }
}
