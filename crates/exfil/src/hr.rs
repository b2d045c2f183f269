/*!
An HR feed: who is leaving, and their last working day, and who works in
which team, as HR systems export it. A departure date turns on the
`departure` signal (sensitive access in the weeks before it); a team
makes a principal's peer group (see `docs/exfiltration.md`).

Two forms, told apart by the first non-blank character:
- **CSV** with a header row: a principal column (`principal`, `arn`,
  `email`, `user` or `user_name`) and a date column (`date`, `last_day`,
  `last_working_day`, `termination_date`, `departure_date` or `end_date`),
  a team column (`team`, `department`, `group` or `org_unit`), or both;
  with a team column, an empty date means "not leaving"; other columns
  are ignored; fields may be quoted (`"…"`, `""` for a quote);
- **JSONL**: one `{"principal": "…", "date": "YYYY-MM-DD", "team": "…"}`
  a line, with a date, a team or both.

Dates are `YYYY-MM-DD`, or an RFC 3339 time whose date part is taken.
A bad line is an error naming the file, the line and the field: a feed
that silently lost a leaver would hide exactly the case it is for.
*/

use serde::Deserialize;

use crate::assets::Departure;

/// A line of an HR feed that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct HrError {
    pub source_name: String,
    pub line: usize,
    pub reason: String,
}

const PRINCIPAL: [&str; 5] = ["principal", "arn", "email", "user", "user_name"];
const TEAM: [&str; 4] = ["team", "department", "group", "org_unit"];
const DATE: [&str; 6] = [
    "date",
    "last_day",
    "last_working_day",
    "termination_date",
    "departure_date",
    "end_date",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    principal: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    team: Option<String>,
}

/// What an HR feed says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HrFeed {
    pub departures: Vec<Departure>,
    /// (principal, team) pairs.
    pub members: Vec<(String, String)>,
}

/// The departures and teams of an HR feed's text; `source_name` names it
/// in errors.
pub fn parse(source_name: &str, text: &str) -> Result<HrFeed, HrError> {
    let err = |line: usize, reason: String| HrError {
        source_name: source_name.to_string(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((first_n, first)) = lines.next() else {
        return Ok(HrFeed::default());
    };
    let mut out = HrFeed::default();
    if first.trim_start().starts_with('{') {
        for (n, l) in std::iter::once((first_n, first)).chain(lines) {
            let d: Line = serde_json::from_str(l).map_err(|e| err(n, e.to_string()))?;
            if d.principal.trim().is_empty() {
                return Err(err(n, "principal: empty".into()));
            }
            match (&d.date, &d.team) {
                (None, None) => return Err(err(n, "a line needs a date, a team or both".into())),
                (_, Some(t)) if t.trim().is_empty() => {
                    return Err(err(n, "team: empty".into()));
                }
                _ => {}
            }
            if let Some(t) = d.team {
                out.members
                    .push((d.principal.clone(), t.trim().to_string()));
            }
            if let Some(date) = d.date {
                out.departures
                    .push(departure(d.principal, &date).map_err(|r| err(n, format!("date: {r}")))?);
            }
        }
        return Ok(out);
    }
    let header: Vec<String> = fields(first)
        .map_err(|r| err(first_n, r))?
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let (p, d, t) = (col(&PRINCIPAL), col(&DATE), col(&TEAM));
    let Some(p) = p.filter(|_| d.is_some() || t.is_some()) else {
        return Err(err(
            first_n,
            format!(
                "the header needs a principal column ({}) and a date column ({}), a team column ({}) or both",
                PRINCIPAL.join(", "),
                DATE.join(", "),
                TEAM.join(", ")
            ),
        ));
    };
    for (n, l) in lines {
        let f = fields(l).map_err(|r| err(n, r))?;
        let get = |i: usize| f.get(i).map(|s| s.trim()).unwrap_or("");
        if get(p).is_empty() {
            return Err(err(n, format!("{}: empty", header[p])));
        }
        if let Some(t) = t
            && !get(t).is_empty()
        {
            out.members.push((get(p).to_string(), get(t).to_string()));
        }
        if let Some(d) = d
            // With a team column, the feed lists everyone: no date, no departure.
            && !(t.is_some() && get(d).is_empty())
        {
            out.departures.push(
                departure(get(p).to_string(), get(d))
                    .map_err(|r| err(n, format!("{}: {r}", header[d])))?,
            );
        }
    }
    Ok(out)
}

fn departure(principal: String, date: &str) -> Result<Departure, String> {
    // A date, or an RFC 3339 time whose date part is taken.
    let (day, time) = date.split_at_checked(10).unwrap_or((date, ""));
    if crate::assets::parse_date(day).is_none() || !(time.is_empty() || time.starts_with('T')) {
        return Err(format!("{date:?} is not a YYYY-MM-DD date"));
    }
    Ok(Departure {
        principal,
        date: day.to_string(),
    })
}

/// The fields of one CSV line (RFC 4180 quoting; no line breaks inside).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut started = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if started && cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                started = true;
                continue;
            }
            c => cur.push(c),
        }
        started = false;
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn csv_exports_are_read_by_their_header() {
        let text = "Employee,Email,Termination_Date,Reason\r\n\
                    \"Doe, Jane\",jane@acme.example,2026-03-14,\"moved on\"\r\n\
                    Bob,bob@acme.example,2026-04-01T17:00:00Z,\n\n";
        let d = parse("hr.csv", text).unwrap().departures;
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].principal, "jane@acme.example");
        assert_eq!(d[0].date, "2026-03-14");
        assert_eq!(d[1].date, "2026-04-01");
    }

    #[test]
    fn jsonl_lines_are_read() {
        let text = "{\"principal\": \"arn:aws:iam::1:user/bob\", \"date\": \"2026-03-14\"}\n";
        let d = parse("hr.jsonl", text).unwrap().departures;
        assert_eq!(d[0].principal, "arn:aws:iam::1:user/bob");
        let f = parse(
            "hr.jsonl",
            "{\"principal\": \"a\", \"team\": \"research\"}\n{\"principal\": \"b\", \"team\": \"data\", \"date\": \"2026-03-14\"}\n",
        )
        .unwrap();
        assert_eq!(
            f.members,
            [
                ("a".to_string(), "research".to_string()),
                ("b".into(), "data".into())
            ]
        );
        assert_eq!(f.departures.len(), 1);
        assert_eq!(f.departures[0].principal, "b");
    }

    #[test]
    fn a_staff_list_with_teams_gives_teams_and_the_leavers() {
        let text = "email,department,end_date\n\
                    a@x,Research,\n\
                    b@x,Data,2026-03-14\n\
                    c@x,,\n";
        let f = parse("staff.csv", text).unwrap();
        assert_eq!(
            f.members,
            [
                ("a@x".to_string(), "Research".to_string()),
                ("b@x".into(), "Data".into())
            ]
        );
        assert_eq!(f.departures.len(), 1);
        assert_eq!(f.departures[0].principal, "b@x");
        let f = parse("staff.csv", "email,team\na@x,Research\n").unwrap();
        assert_eq!(f.members.len(), 1);
        assert!(f.departures.is_empty());
    }

    #[test]
    fn a_bad_line_is_named_with_its_place_and_field() {
        let e = parse("hr.csv", "email,last_day\na@x,2026-02-30x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("hr.csv:2: last_day:"), "{e}");
        let e = parse("hr.csv", "name,when\na,2026-01-01\n").unwrap_err();
        assert!(e.to_string().contains("principal column"), "{e}");
        let e = parse("hr.jsonl", "{\"principal\":\"a\"}\n").unwrap_err();
        assert!(
            e.to_string().starts_with("hr.jsonl:1:") && e.to_string().contains("date"),
            "{e}"
        );
        let e = parse("hr.jsonl", "{\"principal\":\"a\",\"date\":\"x\"}\n").unwrap_err();
        assert!(e.to_string().starts_with("hr.jsonl:1: date:"), "{e}");
        let e = parse("hr.csv", "email,date\n\"a,2026-01-01\n").unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
    }
}
