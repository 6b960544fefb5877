//! Closing a connection the way a client expects, whatever ended it (its
//! guest, a refusal, a relay whose backend could not be reached): what is
//! owed is written, then end of stream, then the client's unread input is
//! read and dropped for a bounded time, so that the kernel answers with
//! FIN, never a reset that could destroy the answer in flight.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::admission::{BANNER_TIME, Gatekeeper};

/// How long, and how much, a client's unread input is drained.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub time: Duration,
    pub bytes: u64,
}

/// After a guest (or a relay) served the connection: its answer may still
/// be on its way, so the client gets time to read it.
pub const AFTER_SERVING: Drain = Drain {
    time: Duration::from_secs(2),
    bytes: 4 << 20,
};

/// After a refusal: only `banner_fail` is owed, and refusals come in
/// floods.
pub const AFTER_REFUSAL: Drain = Drain {
    time: Duration::from_millis(500),
    bytes: 64 << 10,
};

/// Writes `farewell` and shuts down the write side (within `within`), then
/// drains what the client still sends, within `drain`.
pub async fn politely<S>(stream: &mut S, farewell: &[u8], within: Duration, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let said = async {
        stream.write_all(farewell).await?;
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout(within, said).await, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0; 4096];
    let _ = tokio::time::timeout(drain.time, async {
        let mut left = drain.bytes;
        while left > 0 {
            let want = sink.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match stream.read(&mut sink[..want]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
    })
    .await;
}

/// Closes a refused connection in a task of its own: `banner` and
/// `banner_fail` first, then as [`politely`]. During a flood (more
/// refusals of the service being closed than its gate allows at once) it
/// is closed at once instead. Never blocks the caller.
pub fn turn_away<S>(gate: &Gatekeeper, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(farewell) = gate.farewell() else {
        return;
    };
    tokio::spawn(async move {
        politely(&mut stream, &farewell.bytes, BANNER_TIME, AFTER_REFUSAL).await;
    });
}
