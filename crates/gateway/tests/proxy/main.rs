//! The gateway in front of `upstream-mock`: pass-through (JSON and
//! streaming, both APIs), and errors in each API's format.
//!
//! One module per area; `support` holds what they share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod limits;
mod passthrough;
mod responses;
mod support;
mod verdicts;
