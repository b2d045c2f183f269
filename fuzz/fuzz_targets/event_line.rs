//! The event-line normaliser: any line is an event or a located error,
//! never a panic; a normalised request re-normalises the same.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = distillguard_core::parse_event_line(text);
    for d in [
        None,
        Some(distillguard_core::Dialect::OpenAi),
        Some(distillguard_core::Dialect::Anthropic),
    ] {
        let _ = distillguard_core::normalize::normalize_request(text, d);
    }
});
