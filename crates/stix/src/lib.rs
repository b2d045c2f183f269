/*!
Sharing with other providers: STIX 2.1.

- [`export`]: a report's campaigns as a bundle (campaigns, indicators,
  infrastructure, relationships, sightings, and a property extension with
  salted fingerprint hashes).
- [`import`]: partners' bundles as indicators that analyze matches traffic
  against (`--intel`).
*/

pub mod exfil;
pub mod export;
pub mod import;

pub use export::{ExportOptions, bundle};
pub use import::{Intel, StixError};
