/*!
Sources in foreign formats, converted into the event log.

Each importer turns another tool's records into event-log lines (and truth
records where the source is labelled), so every command and the scoreboard
work on them unchanged.
*/

pub mod batch;
pub mod glasswally;
pub mod kong;
pub mod litellm;
pub mod otel;
