//! End-to-end tests of the `distillguard` binary: one harness, many cases.
//!
//! Each case runs the real binary on real files in a fresh temporary
//! directory, as a user would.
//!
//! One module per area; `support` holds what they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // a test: panics are failures, progress goes to stderr

mod analyze;
mod cluster;
mod console;
mod exfil;
mod formats;
mod gateway;
mod integrations;
mod simulate;
mod stix;
mod support;
mod usage;
mod watermark;
