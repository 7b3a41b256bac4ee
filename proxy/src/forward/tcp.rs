//! Copying bytes both ways between client and upstream.
//!
//! When one side finishes sending (EOF, or a TLS `close_notify`), the other side's write half
//! is shut down and the opposite direction keeps flowing, so a client that half-closes still
//! receives the reply. The copy ends when both directions are done, on an I/O error, or when
//! nothing has moved for the idle timeout.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::Activity;

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyEnd {
    /// Both sides finished; bytes client → upstream and upstream → client.
    Done { to_upstream: u64, to_client: u64 },
    /// Nothing moved for the idle timeout.
    Idle,
}

/// Copies until both directions finish, one fails, or the connection idles out.
pub async fn copy_both_ways<C, U>(
    client: &mut C,
    upstream: &mut U,
    activity: &Activity,
    idle_timeout: Duration,
) -> io::Result<CopyEnd>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::select! {
        result = tokio::io::copy_bidirectional(client, upstream) => {
            let (to_upstream, to_client) = result?;
            Ok(CopyEnd::Done { to_upstream, to_client })
        }
        () = activity.idle_for(idle_timeout) => Ok(CopyEnd::Idle),
    }
}
