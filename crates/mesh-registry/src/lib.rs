//! Registry snapshots (pure model) and sources: etcd (own tokio thread) and a static list
