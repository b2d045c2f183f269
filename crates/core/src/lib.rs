/*!
The core of distillguard: the event model every other crate speaks.

- [`time`]: RFC 3339 timestamps as milliseconds.
- [`event`]: the normalised [`Event`] and the account / model records.
- [`normalize`]: OpenAI Chat Completions and Anthropic Messages bodies into one shape.
- [`reader`]: JSON Lines sources (plain, gzip, stdin) with per-line errors.
- [`report`]: the analysis report and the ground truth the scoreboard reads.
*/

pub mod error;
pub mod event;
pub mod import;
pub mod json;
pub mod net;
pub mod normalize;
pub mod parallel;
pub mod progress;
pub mod reader;
pub mod reorder;
pub mod report;
pub mod tier;
pub mod time;

pub use error::{EventError, Invalid, LineError, ReadError};
pub use event::{
    AccountInfo, AccountRecord, ClientInfo, Dialect, Event, ModelRelease, Request, Response,
    Sampling,
};
pub use normalize::parse_event_line;
pub use reader::{EventReader, Lines, ReadStats, RecordReader};
pub use report::{
    AccountReport, CampaignReport, Escalation, Label, Reason, Report, Timeline, TruthRecord,
    Verdict,
};
pub use time::Timestamp;
