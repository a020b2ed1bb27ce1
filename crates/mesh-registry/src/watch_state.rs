//! The consumer's etcd watch as other threads see it: whether it is connected, to which of the configured
//! endpoints, how often it restarted and when its member last answered. The watcher thread writes a few
//! atomics at session boundaries and per message it receives; the admin thread reads them when scraped
//! ([`WatchState::status`]). No lock, nothing sent anywhere.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// No endpoint in use (stored in [`WatchShared::endpoint`]).
const NO_ENDPOINT: usize = usize::MAX;

/// A shared handle on the watch's state (cheap to clone): written by the watcher thread, read anywhere.
#[derive(Debug, Clone)]
pub struct WatchState(Arc<WatchShared>);

#[derive(Debug)]
struct WatchShared {
    /// The configured endpoints (the index in `endpoint` points here: a bounded set).
    endpoints: Box<[String]>,
    connected: AtomicBool,
    /// Index into `endpoints` of the member the current (or last) session talks to; [`NO_ENDPOINT`]: none.
    endpoint: AtomicUsize,
    /// Sessions that ended (each followed by a new connect after a backoff).
    restarts: AtomicU64,
    /// When the member last answered (a read, an event, a progress report), Unix milliseconds; 0: never.
    last_heard_ms: AtomicU64,
    /// When the watch last became established, Unix milliseconds; 0: never.
    connected_since_ms: AtomicU64,
}

/// What [`WatchState::status`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    /// The watch is established and its member has not failed since.
    pub connected: bool,
    /// The configured endpoint of the member the current session talks to (or the last one did).
    pub endpoint: Option<String>,
    /// Watch sessions that ended and were started again.
    pub restarts: u64,
    /// When the member last answered anything (a read, events, a progress report).
    pub last_heard: Option<SystemTime>,
    /// When the watch last became established.
    pub connected_since: Option<SystemTime>,
}

impl WatchState {
    /// The state of a watch over `endpoints` (as configured), not connected yet.
    pub fn new(endpoints: &[String]) -> Self {
        WatchState(Arc::new(WatchShared {
            endpoints: endpoints.into(),
            connected: AtomicBool::new(false),
            endpoint: AtomicUsize::new(NO_ENDPOINT),
            restarts: AtomicU64::new(0),
            last_heard_ms: AtomicU64::new(0),
            connected_since_ms: AtomicU64::new(0),
        }))
    }

    /// The configured endpoints, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.0.endpoints
    }

    /// Reads the state now.
    pub fn status(&self) -> WatchStatus {
        let s = &self.0;
        let endpoint = s.endpoint.load(Ordering::Relaxed);
        WatchStatus {
            connected: s.connected.load(Ordering::Relaxed),
            endpoint: s.endpoints.get(endpoint).cloned(),
            restarts: s.restarts.load(Ordering::Relaxed),
            last_heard: from_unix_ms(s.last_heard_ms.load(Ordering::Relaxed)),
            connected_since: from_unix_ms(s.connected_since_ms.load(Ordering::Relaxed)),
        }
    }

    /// The session connected to the member at `endpoint` (one of the configured ones; another is ignored).
    pub(crate) fn member(&self, endpoint: &str) {
        let i = self
            .0
            .endpoints
            .iter()
            .position(|e| e == endpoint)
            .unwrap_or(NO_ENDPOINT);
        self.0.endpoint.store(i, Ordering::Relaxed);
    }

    /// The member answered (a read, a watch message): heard now.
    pub(crate) fn heard(&self) {
        self.0.last_heard_ms.store(unix_ms_now(), Ordering::Relaxed);
    }

    /// The watch is established (etcd confirmed its creation).
    pub(crate) fn watching(&self) {
        if !self.0.connected.swap(true, Ordering::Relaxed) {
            self.0.connected_since_ms.store(unix_ms_now(), Ordering::Relaxed);
        }
        self.heard();
    }

    /// The session ended (an error, a silent member): not connected until the next one is established.
    pub(crate) fn session_ended(&self) {
        self.0.connected.store(false, Ordering::Relaxed);
        self.0.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .max(1)
}

fn from_unix_ms(ms: u64) -> Option<SystemTime> {
    (ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_connects_is_heard_and_ends() {
        let state = WatchState::new(&["http://a:2379".to_owned(), "http://b:2379".to_owned()]);
        let reader = state.clone();
        let start = reader.status();
        assert_eq!(
            start,
            WatchStatus {
                connected: false,
                endpoint: None,
                restarts: 0,
                last_heard: None,
                connected_since: None
            }
        );
        state.member("http://b:2379");
        state.heard();
        let read = reader.status();
        assert!(!read.connected, "a read alone is not a watch");
        assert_eq!(read.endpoint.as_deref(), Some("http://b:2379"));
        assert!(read.last_heard.is_some());
        state.watching();
        let since = reader.status().connected_since;
        assert!(since.is_some() && reader.status().connected);
        state.watching();
        assert_eq!(reader.status().connected_since, since, "kept while connected");
        state.session_ended();
        let ended = reader.status();
        assert!(!ended.connected);
        assert_eq!(ended.restarts, 1);
        assert_eq!(
            ended.endpoint.as_deref(),
            Some("http://b:2379"),
            "the last member stays named"
        );
        state.member("http://unknown:1");
        assert_eq!(
            reader.status().endpoint,
            None,
            "only configured endpoints are named"
        );
    }
}
