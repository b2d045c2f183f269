//! Other gateways' log lines (LiteLLM, OpenTelemetry GenAI spans, Kong,
//! Helicone, and OTLP protobuf):
//! any bytes give events or a typed error, never a panic.
#![no_main]
use distillguard_core::import::{helicone, kong, litellm, otel, otlp_proto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // OTLP protobuf export requests (the live receiver's other encoding).
    let _ = otel::parse_protobuf(data);
    let _ = otlp_proto::decode_traces(data);
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = litellm::parse_line(line);
    let _ = litellm::parse_line_by_end_user(line);
    let _ = otel::parse_line(line);
    let _ = kong::parse_line(line);
    let _ = helicone::parse_line(line);
});
