/*!
The scoreboard as a terminal table: detector and baseline side by side,
then one row per campaign.
*/

use std::fmt::Write;

use crate::{CampaignScore, Scoreboard, Scores};

fn pct(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{:.*}%", digits, v * 100.0))
}

fn num(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.3}"))
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn detection(c: Option<&CampaignScore>) -> String {
    match c {
        None => "–".into(),
        Some(c) if c.flagged == 0 => "never".into(),
        Some(c) => match (c.served_before_detection, c.served_before_detection_pct) {
            (Some(n), Some(p)) => format!("{} req ({p:.2}%)", thousands(n)),
            _ => "time unknown".into(),
        },
    }
}

/// Renders the scoreboard for a terminal.
pub fn render(sb: &Scoreboard) -> String {
    let mut o = String::new();
    let d = &sb.detector;
    let b = sb.baseline.as_ref();
    let _ = writeln!(
        o,
        "accounts: {} ({} attack, {} benign){}",
        thousands(sb.truth_accounts),
        thousands(sb.attack_accounts),
        thousands(sb.benign_accounts),
        sb.events
            .map_or(String::new(), |e| format!("   events: {}", thousands(e)))
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<28}{:>16}{:>22}",
        "", "distillguard", "rate-limit baseline"
    );
    let row = |o: &mut String, name: &str, f: &dyn Fn(&Scores) -> String| {
        let _ = writeln!(o, "{:<28}{:>16}{:>22}", name, f(d), b.map_or("–".into(), f));
    };
    row(&mut o, "accounts flagged", &|s| thousands(s.flagged));
    row(&mut o, "precision", &|s| pct(s.precision, 1));
    row(&mut o, "recall", &|s| pct(s.recall, 1));
    row(&mut o, "F1", &|s| num(s.f1));
    row(&mut o, "benign false-positive rate", &|s| {
        pct(s.benign_false_positive_rate, 3)
    });
    row(&mut o, "false positives", &|s| {
        thousands(s.counts.false_positives)
    });
    row(&mut o, "own requests before flag p50", &|s| {
        s.account_delay_median.map_or("–".into(), thousands)
    });
    row(&mut o, "own requests before flag p90", &|s| {
        s.account_delay_p90.map_or("–".into(), thousands)
    });
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<22}{:>9}{:>9}{:>26}{:>9}{:>24}",
        "campaign", "accounts", "recall", "first flag after", "baseline", "baseline first flag"
    );
    for c in &d.campaigns {
        let bc = b.and_then(|b| b.campaigns.iter().find(|x| x.campaign == c.campaign));
        let _ = writeln!(
            o,
            "{:<22}{:>9}{:>9}{:>26}{:>9}{:>24}",
            c.campaign,
            thousands(c.accounts),
            pct(Some(c.recall), 1),
            detection(Some(c)),
            bc.map_or("–".into(), |x| pct(Some(x.recall), 1)),
            detection(bc),
        );
    }
    if let Some(k) = &sb.keys {
        let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            o,
            "keys: {} of {} harvesting keys flagged ({}); honest keys of attack accounts flagged: {} of {} ({}); honest accounts' keys flagged: {} of {}\n",
            k.bad_keys_flagged,
            k.bad_keys,
            pct(k.recall),
            k.attack_account_honest_keys_flagged,
            k.attack_account_honest_keys
                .map_or("?".to_string(), |n| n.to_string()),
            pct(k.attack_account_honest_key_fpr),
            k.honest_account_keys_flagged,
            k.honest_account_keys
                .map_or("?".to_string(), |n| n.to_string()),
        );
    }
    let l = &sb.linking;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "campaign linking: {} campaigns reported, {} mostly honest, {} honest accounts linked",
        l.reported_campaigns, l.honest_campaigns, l.honest_accounts_linked
    );
    let _ = writeln!(
        o,
        "{:<22}{:>9}  {:<18}{:>13}{:>8}{:>26}",
        "campaign", "accounts", "linked as", "completeness", "purity", "confirmed after"
    );
    for c in &l.campaigns {
        let after = match (c.served_before_detection, c.served_before_detection_pct) {
            (Some(n), Some(p)) => format!("{} req ({p:.2}%)", thousands(n)),
            _ if c.detected_at.is_some() => "(no event log)".into(),
            _ => "never".into(),
        };
        let _ = writeln!(
            o,
            "{:<22}{:>9}  {:<18}{:>13}{:>8}{:>26}",
            c.campaign,
            thousands(c.accounts),
            c.matched.as_deref().unwrap_or("–"),
            pct(Some(c.completeness), 1),
            pct(Some(c.purity), 1),
            after
        );
    }
    if !sb.warnings.is_empty() {
        let _ = writeln!(o);
        for w in &sb.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
