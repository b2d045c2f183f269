//! Configuration and key files: the gateway's TOML (parsed, then
//! validated), the `[link]` table, and watermark key files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = distillguard_gateway::Config::from_toml(text);
    if let Ok(c) = toml::from_str::<distillguard_link::Config>(text) {
        let _ = c.validate();
    }
    let _ = distillguard_watermark::key::Key::parse(text);
});
