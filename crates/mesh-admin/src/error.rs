use std::net::SocketAddr;

/// What can go wrong on the admin side.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("metric name {0:?} is not a valid Prometheus name")]
    BadMetricName(String),
    #[error("label name {0:?} is not a valid Prometheus label name")]
    BadLabelName(String),
    #[error("counter {0:?} must end in _total")]
    CounterWithoutTotal(String),
    #[error("metric {name:?} declared as {was} and then as {now}")]
    KindMismatch {
        name: String,
        was: &'static str,
        now: &'static str,
    },
    #[error("histogram {0:?}: bucket bounds differ between samples, or counts do not match the bounds")]
    BucketMismatch(String),
    #[error("binding the admin listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("/proc/self/{file}: {why}")]
    Proc { file: &'static str, why: String },
}
