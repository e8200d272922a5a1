//! The `graspd` binary: the command line (`cli`) in front of the library.

#![forbid(unsafe_code)]

mod cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::run().await
}
