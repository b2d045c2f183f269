/*!
Progress reporting for long jobs, decoupled from any terminal.

Libraries call a [`Progress`]; the CLI draws a bar on a terminal and
nothing otherwise. Calls may come from several threads.
*/

/// Receives progress of a long job.
pub trait Progress: Sync {
    /// A new stage begins; `total` units if known.
    fn stage(&self, name: &str, total: Option<u64>);
    /// `n` more units are done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
}
