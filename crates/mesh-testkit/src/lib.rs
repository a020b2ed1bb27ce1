//! Not shipped: test and benchmark kit for Dubbo Mesh Agent.
//!
//! * [`sim`]: a Dubbo provider simulator (`hash(String)`, latency, thread cap with Dubbo's status 100,
//!   capacity knee), hessian2 and fastjson; binary `provider-sim`.
//! * [`loadgen`]: the 2018 challenge's consumer as a load generator (random strings, checks every answer,
//!   HdrHistogram latencies, JSON summary); binary `loadgen`.
//! * [`idle_conns`]: keep-alive connections that send one call each and then stay open and silent
//!   (`loadgen --idle-connections N`: the memory benchmark's idle connections).
//! * [`process`]: child processes that die with the test, free loopback ports, readiness lines, bounded
//!   waits (`wait_until`).
//! * [`drift`]: the drift benchmark's oracle (registrations that follow the simulators' capacity
//!   schedules, [`sim::schedule`]); binary `drift-oracle`.
//! * [`churn`]: which instance leaves or joins next in the registry scale benchmark; binary `registry-churn`.
//! * [`dubbo_writers`]: etcd keys exactly as Java 2.7 / Java 3.3 / dubbo-go write them (from their sources,
//!   not from mesh-registry), and a writer that puts them into a real etcd on leases kept alive.
//! * [`etcd`]: a real etcd server on loopback ports with a temporary data dir, stopped by PID.
//! * [`etcd_kv`]: a blocking etcd client for tests' own reads and writes.
//! * [`etcd_cluster`]: a real etcd cluster (3 members, say) on loopback, plain or TLS with client
//!   certificates, optionally with authentication; members killed and restarted by index.
//! * [`node_peers`]: the third-party Node.js Dubbo peers (sofa-rpc-node provider with a service per Java type,
//!   dubbo2.js and sofa-rpc-node consumers that check the wire with hessian.js) as child processes.
//! * [`timer`]: a precise timer thread for async code (answers of the simulator, open-loop pacing).

pub mod churn;
pub mod drift;
pub mod dubbo_writers;
pub mod etcd;
pub mod etcd_cluster;
pub mod etcd_kv;
pub mod idle_conns;
pub mod loadgen;
pub mod node_peers;
pub mod process;
pub mod sim;
pub mod timer;

/// A tokio runtime for a kit component: `workers` threads (0 = current-thread), threads named `name`.
pub fn runtime(workers: usize, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
    }
}
