/*!
Detection signals, one module each.

`request/` holds per-request signals: functions of one [`Event`]
(`distillguard_core::Event`), cheap enough to run on every request.
*/

pub mod request;
