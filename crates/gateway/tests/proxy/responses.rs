//! The OpenAI Responses API: passed through, metered and logged, and
//! continued conversations known by the answers the gateway served.

use crate::common::spawn;
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn the_responses_api_passes_through_and_is_metered_and_logged() {
    let dir = temp_dir("responses");
    let up = mock(Duration::ZERO).await;
    let mut cfg = config(&up, 5, 1 << 20);
    cfg.log = Some(distillguard_gateway::eventlog::LogConfig {
        path: dir.join("events.jsonl"),
        max_bytes: 1 << 20,
        keep: 1,
        durability: distillguard_gateway::eventlog::Durability::Sync,
        flush_interval_ms: std::num::NonZeroU64::MIN,
    });
    let gw = spawn(router_ok(cfg)).await;
    let body = r#"{"model":"atlas-3","instructions":"Think it through.","max_output_tokens":400,"reasoning":{"effort":"high","summary":"detailed"},"input":[{"role":"user","content":[{"type":"input_text","text":"Explain TCP step by step"}]}]}"#;
    // The same answer directly and through the gateway.
    let direct = post(&up, "/v1/responses", body).await;
    let via = post(&gw, "/v1/responses", body).await;
    assert_eq!(direct, via);
    let v: serde_json::Value = serde_json::from_str(&via.1).unwrap();
    assert_eq!(v["output"][0]["type"], "reasoning");
    let streamed = body.replacen("{", r#"{"stream":true,"#, 1);
    let (st, sse) = post(&gw, "/v1/responses", &streamed).await;
    assert_eq!(st, 200);
    assert!(
        sse.contains("event: response.reasoning_summary_text.delta"),
        "{sse}"
    );
    // A Responses body the detector cannot read is refused in OpenAI's
    // format.
    let (st, err) = post(
        &gw,
        "/v1/responses",
        r#"{"model":"atlas-3","input":[{"role":"user","content":7}]}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert!(err.contains("request.input[0].content"), "{err}");
    // Both answers are in the log (sync: written before the answers
    // completed), as Responses events with their metered accounting.
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let events: Vec<_> = text
        .lines()
        .map(|l| distillguard_core::parse_event_line(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    for e in &events {
        assert_eq!(e.dialect, distillguard_core::Dialect::Responses);
        assert_eq!(e.request.last_user_text, "Explain TCP step by step");
        assert!(e.request.sampling.reasoning_summary);
        let r = e.response.as_ref().unwrap();
        assert!(r.reasoning_returned, "{text}");
        assert!(
            r.reasoning_tokens.unwrap() > 0 && r.output_tokens.unwrap() > 0,
            "{text}"
        );
        assert_eq!(r.finish_reason.as_deref(), Some("completed"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_continued_responses_conversation_is_known_by_the_answers_the_gateway_served() {
    // The client sends only its new turn with `previous_response_id`; the
    // gateway adds the depth of the answers it served (crates/gateway/src/
    // chains.rs), streamed or not, and counts what it could not resolve.
    let up = mock(Duration::ZERO).await;
    let gw = spawn(router_ok(config(&up, 10, 1 << 20))).await;
    let first = r#"{"model":"atlas-3","input":"Explain TCP","max_output_tokens":20}"#;
    let (st, body) = post(&gw, "/v1/responses", first).await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    // A streamed continuation of it, then a continuation of an id the
    // gateway never served.
    let next = format!(
        r#"{{"model":"atlas-3","input":"and UDP?","max_output_tokens":20,"stream":true,"previous_response_id":"{id}"}}"#
    );
    assert_eq!(post(&gw, "/v1/responses", &next).await.0, 200);
    let stray = r#"{"model":"atlas-3","input":"more","max_output_tokens":20,"previous_response_id":"resp_elsewhere"}"#;
    assert_eq!(post(&gw, "/v1/responses", stray).await.0, 200);
    assert_eq!(
        metric(
            &gw,
            "distillguard_responses_continued_total{known=\"true\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            "distillguard_responses_continued_total{known=\"false\"}"
        )
        .await,
        1.0
    );
}
