//! The bounded reorder buffer lives in `distillguard_core::reorder` (the
//! exfiltration detector uses it too); here are its tests on the engine's
//! records.

pub use distillguard_core::reorder::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RequestSignals, pre, time_order};

    fn pres(ts_secs: &[i64]) -> Vec<RequestSignals> {
        ts_secs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let line = format!(
                    r#"{{"ts":"{}","account_id":"a{}","request":{{"messages":[{{"role":"user","content":"hi"}}]}}}}"#,
                    distillguard_core::Timestamp(1_771_200_000_000 + t * 1000),
                    i % 3
                );
                pre(&distillguard_core::parse_event_line(&line).unwrap())
            })
            .collect()
    }

    fn keys(v: &[RequestSignals]) -> Vec<(i64, u64)> {
        v.iter().map(|p| (p.ts.0, p.account_key)).collect()
    }

    #[test]
    fn a_nearly_sorted_stream_comes_out_in_the_full_sort_order() {
        // Disorder of up to 20 s, equal timestamps across accounts.
        let input = pres(&[0, 5, 3, 3, 3, 10, 30, 12, 25, 40, 40, 31, 60, 45, 90, 70]);
        let sorted: Vec<RequestSignals> = time_order(&input)
            .into_iter()
            .map(|i| input[i as usize].clone())
            .collect();
        let mut r = Reorder::new(20_000);
        let mut out = Vec::new();
        for p in input {
            r.push(p, |p| out.push(p)).unwrap();
        }
        assert!(r.peak < 16, "held {} records", r.peak);
        r.finish(|p| out.push(p));
        assert_eq!(keys(&out), keys(&sorted));
    }

    #[test]
    fn a_record_later_than_the_window_is_reported() {
        let input = pres(&[0, 100, 200, 50]);
        let mut r = Reorder::new(10_000);
        let mut results = Vec::new();
        for p in input {
            results.push(r.push(p, |_| {}));
        }
        assert_eq!(results[..3], [Ok(()), Ok(()), Ok(())]);
        assert_eq!(results[3], Err(Late { behind_ms: 50_000 }));
    }
}
