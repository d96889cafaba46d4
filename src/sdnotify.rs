//! systemd's notify protocol (`Type=notify`): `READY=1` once nightcrier serves, `WATCHDOG=1`
//! at half of `WatchdogSec`, `STOPPING=1` on shutdown.
//!
//! This module owns the `NOTIFY_SOCKET` datagram socket and the watchdog's pace; it must not
//! decide when nightcrier is ready (the CLI says so after the app is built). Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing. The protocol is a few lines of text on a
//! unix datagram socket (sd_notify(3)), so it is written here rather than pulled in as a crate.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {path:?} is not a usable socket address: {source}")]
    Address {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send {message:?} to the service manager's NOTIFY_SOCKET: {source}")]
    Send {
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    Watchdog(String),
}

/// A connection to the service manager, or nothing when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Result<Self, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Self::connect(&path),
            _ => Ok(Self { target: None }),
        }
    }

    /// Does nothing on `notify`.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    pub fn connect(path: &str) -> Result<Self, NotifyError> {
        let err = |source| NotifyError::Address {
            path: path.to_string(),
            source,
        };
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).map_err(err)?
            }
            None => SocketAddr::from_pathname(path).map_err(err)?,
        };
        let socket = UnixDatagram::unbound().map_err(err)?;
        Ok(Self {
            target: Some((socket, addr)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one state message (`READY=1`, `WATCHDOG=1`, `STATUS=...`).
    pub fn notify(&self, message: &str) -> Result<(), NotifyError> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        socket
            .send_to_addr(message.as_bytes(), addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send {
                message: message.to_string(),
                source,
            })
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (as sd_watchdog_enabled(3)
/// recommends), when it is set for this process (`WATCHDOG_PID` absent or ours).
pub fn watchdog_interval() -> Result<Option<Duration>, NotifyError> {
    let Ok(usec) = std::env::var("WATCHDOG_USEC") else {
        return Ok(None);
    };
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(
            Duration::from_micros(n / 2).max(Duration::from_millis(1)),
        )),
        _ => Err(NotifyError::Watchdog(usec)),
    }
}

/// Sends `WATCHDOG=1` every `interval` until cancelled. It runs on the same runtime as
/// everything else, so a wedged runtime stops the pings and systemd restarts the service.
pub struct Watchdog {
    notifier: Arc<Notifier>,
    interval: Duration,
}

impl Watchdog {
    pub fn new(notifier: Arc<Notifier>, interval: Duration) -> Self {
        Self { notifier, interval }
    }

    pub async fn run(self, token: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.notifier.notify("WATCHDOG=1") {
                Ok(()) => failing = false,
                // Logged once per episode: the manager may be restarting.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("systemd watchdog: {e}");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_on_a_real_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        assert!(!Notifier::disabled().is_enabled());
        Notifier::disabled().notify("READY=1").unwrap();
    }
}
