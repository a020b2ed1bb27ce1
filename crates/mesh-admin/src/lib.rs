//! The agent's admin side, kept out of the data path.
//!
//! - [`exposition`]: the metric model (counters, gauges, histograms with labels) and its Prometheus text
//!   rendering; adding the same series twice sums it, which is how per-shard snapshots are merged;
//! - [`router`]: which answer an admin request gets (path and method), decided without IO;
//! - [`server`]: the admin HTTP/1.1 listener, one blocking std thread (admin traffic is rare), every read
//!   bounded;
//! - [`process`]: the process' RSS and CPU time from `/proc` (parsing kept pure).

mod error;
pub mod exposition;
pub mod process;
pub mod router;
pub mod server;

pub use error::AdminError;
pub use exposition::{Exposition, Kind};
pub use router::{route, Refusal, Route};
pub use server::{AdminServer, Answer};
