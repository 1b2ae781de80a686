//! `kb parallel`: build the input, the template and the workers from the options, then hand them to the scheduler.

use crate::cli::ParallelOpts;
use crate::error::Result;

/// Runs `kb parallel`.
pub async fn exec(_opts: ParallelOpts) -> Result<u8> {
    todo!("issue [engine]")
}
