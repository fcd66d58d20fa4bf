//! `vostok bench`: load generators modelled on RocketMQ's benchmark tools, and the machine's own
//! ceilings measured in the same run.

pub mod store;

use crate::RunError;

/// The benchmarks `vostok bench` runs.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Storage engine: append throughput against the disk's raw sequential write speed, and
    /// recovery time of a CommitLog.
    Store(store::StoreArgs),
}

/// Runs one benchmark to completion.
pub async fn run(command: BenchCommand) -> Result<(), RunError> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
    }
}
