/*!
Detection signals, one module each.

`request/` holds per-request signals: functions of one event
(`distillguard_core::Event`), cheap enough to run on every request.
`account` folds them into per-account behavioural fingerprints in fixed
memory.
*/

pub mod account;
pub mod request;
