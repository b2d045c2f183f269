//! The answer tap: metering an answer (JSON or SSE, either API) split at
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
    let dialect = if mode & 1 == 0 {
        Dialect::Openai
    } else {
        Dialect::Anthropic
    };
    let sse = mode & 2 != 0;
    let cut = usize::from(mode >> 2).min(body.len());
    let mut m = Meter::new(dialect, sse);
    m.feed(&body[..cut]);
    m.feed(&body[cut..]);
    let _ = m.finish();
    let _ = strip_json(body);
    let mut s = SseStripper::default();
    let _ = s.feed(&body[..cut]);
    let _ = s.feed(&body[cut..]);
    let _ = s.finish();
});
