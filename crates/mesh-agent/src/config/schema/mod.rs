//! The typed sections, one file each. Their fields are the keys of `keys.rs` (a test checks both lists
//! match); the defaults, ranges and help live in that table, not here.

mod admin;
mod consumer;
mod etcd;
mod log;
mod provider;
mod runtime;

pub(crate) use admin::{AdminConfig, AdminListen};
pub(crate) use consumer::{CallPolicyConfig, ConsumerConfig};
pub(crate) use etcd::{EtcdSection, Password};
pub(crate) use log::{LogConfig, LogFormat};
pub(crate) use provider::ProviderConfig;
pub(crate) use runtime::{RawRuntime, RuntimeConfig};
