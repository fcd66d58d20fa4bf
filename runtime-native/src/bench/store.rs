//! `vostok bench store`: the storage engine against the disk it runs on.

use crate::RunError;

/// Options of `vostok bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {}

/// Runs the storage benchmark.
pub async fn run(_args: StoreArgs) -> Result<(), RunError> {
    Err(RunError::Usage(
        "vostok bench store is not built yet".into(),
    ))
}
