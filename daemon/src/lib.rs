//! graspd: a GRASP server. See `docs/architecture.md` for the map of this crate.

#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod authorize;
pub mod config;
pub mod git;
pub mod http;
mod layers;
pub mod live;
pub mod metrics;
pub mod nip01;
pub mod nip34;
pub mod process;
pub mod purgatory;
pub mod queue;
pub mod relay;
pub mod rpc;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod sync;
#[cfg(test)]
mod testing;
pub mod types;
