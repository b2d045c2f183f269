//! The answer tap: metering an answer (JSON or SSE, any API) split at
//! any point, and withholding reasoning from it, never panics.
#![no_main]
use distillguard_gateway::Dialect;
use distillguard_gateway::tap::Meter;
use distillguard_gateway::withhold::{SseStripper, strip_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let dialect = match mode & 3 {
        0 => Dialect::OpenAi,
        1 => Dialect::Anthropic,
        _ => Dialect::Responses,
    };
    let sse = mode & 4 != 0;
    let cut = usize::from(mode >> 3).min(body.len());
    let mut m = Meter::new(dialect, sse);
    m.feed(&body[..cut]);
    m.feed(&body[cut..]);
    let _ = m.finish();
    let _ = strip_json(dialect, body);
    let mut s = SseStripper::new(dialect);
    let _ = s.feed(&body[..cut]);
    let _ = s.feed(&body[cut..]);
    let _ = s.finish();
});
