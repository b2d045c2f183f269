/*!
Campaign linking: from accounts to the campaigns behind them.

The February 2026 campaigns were caught as campaigns: thousands of small
accounts in "hydra" networks, each unremarkable alone. Data flows one way:
the detection engine scores each request's account; the linker receives the
request's keys and the account's risk, and joins suspicious accounts that
meet on dense keys; campaign reports and membership come out at the end.

- [`keys`]: what an event or account record shares (payment method, e-mail
  domain, IP prefix, client stack, system prompt, template, synchronised
  windows), as tagged 64-bit keys with readable labels.
- [`linker`]: the streaming rules: suspicion, density, union, confirmation,
  dormant accounts.
- [`campaign`]: the campaign reports, and membership applied to verdicts.
- [`record`]: one request's link summary, as a cluster's workers send it
  to the linker.
*/

pub mod campaign;
pub mod keys;
pub mod linker;
pub mod record;

pub use keys::{Key, Kind, Label, account_keys, event_keys};
pub use linker::{Activity, Config, Linker};
pub use record::LinkRecord;
