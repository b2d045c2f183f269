/*!
The enforcement gateway: an OpenAI- and Anthropic-compatible proxy in
front of the provider's model servers, which records every request, feeds
the detectors and enforces their verdicts inline.

Where things are:
- [`state`]: the gateway's state and the verdict a request meets;
- [`routes`]: the public and internal routes;
- [`phases`]: one request, phase by phase (authenticate, enforce, read,
  route, forward, complete, logging);
- [`dialect`]: one module per API (metering, errors, withholding, keys);
- [`tap`]: the answer on its way back (metering, stalls, mid-answer
  faults);
- [`limits`]: requests and tokens per minute, per key and per account;
- [`detector`]: the detection thread (engine and campaign linker) and the
  verdicts it publishes;
- [`withhold`]: the withhold-reasoning action;
- [`observed`], [`eventlog`]: a finished request, and the event log;
- [`admin`]: verdict overrides, the allowlist, config reload;
- [`metrics`]: the `/metrics` endpoint;
- [`listener`]: the connection cap and `TCP_NODELAY`;
- [`server`]: `serve`, the accept loop, header deadline, body budget and
  drain;
- [`tls`]: TLS on the listener and to `https://` upstreams;
- [`client_ip`]: the client's address, and which proxies are believed;
- [`rejections`]: requests refused before a model, per account;
- [`error`]: errors by side, in each API's format;
- [`config`]: the TOML file.

Endpoints: `POST /v1/chat/completions`, `POST /v1/messages`,
`POST /v1/responses`,
`GET /v1/models`, `GET /healthz`, `GET /metrics` (Prometheus), and
`/admin/…` when an admin token is configured. [`serve`] takes its
shutdown from the caller (the CLI passes [`shutdown_signal`]: Ctrl-C or
SIGTERM) and lets in-flight streams finish.
*/

pub mod admin;
mod batches;
pub mod budget;
pub mod chains;
pub mod client_ip;
pub mod config;
mod console;
pub mod detector;
pub mod dialect;
pub mod error;
pub mod eventlog;
mod integrations;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod observed;
mod phases;
mod queue;
pub mod rejections;
mod routes;
pub mod server;
pub mod shared_limits;
mod state;
pub mod tap;
pub mod tls;
pub mod withhold;

pub use config::Config;
pub use dialect::Dialect;
pub use error::GatewayError;
pub use error::ServeError;
pub use routes::{MAX_HEADER_BYTES, MAX_URI_BYTES, router, router_from};
pub use server::{serve, shutdown_signal};
pub use state::Decision;
pub(crate) use state::{Gateway, KEY_PREFIX};
