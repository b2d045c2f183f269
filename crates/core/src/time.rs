/*!
RFC 3339 timestamps as milliseconds since the Unix epoch.

Every event carries one; detectors order and window by it, so it is a plain
`i64` that compares and subtracts cheaply. Parsing accepts any RFC 3339
form (offsets, `t`/`z`, fractional seconds of any length; fractions below a
millisecond are truncated); formatting always writes UTC with milliseconds
(`2026-02-24T08:15:30.123Z`), so that a log written by us sorts as text too.
*/

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {why}")]
pub struct TimestampError {
    text: String,
    why: &'static str,
}

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for rates and plots).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// Parses an RFC 3339 date-time, e.g. `2026-02-24T08:15:30.5+01:00`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        parse_rfc3339(text.as_bytes()).map_err(|why| TimestampError {
            text: truncate(text, 64),
            why,
        })
    }

    /// Day of the week, 0 = Monday … 6 = Sunday (UTC).
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        (self.0.div_euclid(MS_PER_DAY) + 3).rem_euclid(7) as u32
    }

    /// Milliseconds since midnight UTC.
    pub fn millis_of_day(self) -> i64 {
        self.0.rem_euclid(MS_PER_DAY)
    }

    /// Writes the canonical form into `out` (no allocation).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let days = self.0.div_euclid(MS_PER_DAY);
        let rem = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss, ms) = (
            rem / MS_PER_HOUR,
            (rem / MS_PER_MINUTE) % 60,
            (rem / MS_PER_SECOND) % 60,
            rem % 1000,
        );
        let y = y.clamp(0, 9999);
        push_digits(out, y, 4);
        out.push(b'-');
        push_digits(out, m as i64, 2);
        out.push(b'-');
        push_digits(out, d as i64, 2);
        out.push(b'T');
        push_digits(out, hh, 2);
        out.push(b':');
        push_digits(out, mm, 2);
        out.push(b':');
        push_digits(out, ss, 2);
        out.push(b'.');
        push_digits(out, ms, 3);
        out.push(b'Z');
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn push_digits(out: &mut Vec<u8>, value: i64, width: usize) {
    let mut buf = [b'0'; 4];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(24);
        self.write_rfc3339(&mut buf);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(b: &[u8], at: usize, len: usize) -> Result<i64, &'static str> {
    let digits = b.get(at..at + len).ok_or("too short")?;
    digits.iter().try_fold(0i64, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + (c - b'0') as i64)
        } else {
            Err("expected a digit")
        }
    })
}

fn expect(b: &[u8], at: usize, what: &[u8]) -> Result<(), &'static str> {
    match b.get(at) {
        Some(c) if what.contains(c) => Ok(()),
        Some(_) => Err("unexpected character"),
        None => Err("too short"),
    }
}

fn parse_rfc3339(b: &[u8]) -> Result<Timestamp, &'static str> {
    let y = num(b, 0, 4)?;
    expect(b, 4, b"-")?;
    let mo = num(b, 5, 2)? as u32;
    expect(b, 7, b"-")?;
    let d = num(b, 8, 2)? as u32;
    expect(b, 10, b"Tt ")?;
    let hh = num(b, 11, 2)?;
    expect(b, 13, b":")?;
    let mi = num(b, 14, 2)?;
    expect(b, 16, b":")?;
    let ss = num(b, 17, 2)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Err("date out of range");
    }
    // 60 is a leap second; it is folded onto the next second.
    if hh > 23 || mi > 59 || ss > 60 {
        return Err("time out of range");
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 3 {
                ms = ms * 10 + (c - b'0') as i64;
            }
            i += 1;
        }
        match i - start {
            0 => return Err("empty fraction"),
            1 => ms *= 100,
            2 => ms *= 10,
            _ => {}
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(b, i + 1, 2)?;
            expect(b, i + 3, b":")?;
            let om = num(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            i += 6;
            let off = oh * 60 + om;
            if sign == b'-' { -off } else { off }
        }
        Some(_) => return Err("expected `Z` or an offset"),
        None => return Err("missing time-zone offset"),
    };
    if i != b.len() {
        return Err("trailing characters");
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset_min * 60;
    Ok(Timestamp(secs * 1000 + ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let base = Timestamp::parse("2026-02-24T08:15:30Z").unwrap();
        assert_eq!(base.to_string(), "2026-02-24T08:15:30.000Z");
        assert_eq!(Timestamp::parse("2026-02-24T09:15:30+01:00").unwrap(), base);
        assert_eq!(Timestamp::parse("2026-02-24t03:45:30-04:30").unwrap(), base);
        assert_eq!(
            Timestamp::parse("2026-02-24T08:15:30.5Z").unwrap().0 - base.0,
            500
        );
        assert_eq!(
            Timestamp::parse("2026-02-24T08:15:30.123456789Z")
                .unwrap()
                .0
                - base.0,
            123
        );
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z").unwrap().0, 0);
    }

    #[test]
    fn rejects_bad_forms_with_reason() {
        for bad in [
            "",
            "2026-02-24",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-24T24:00:00Z",
            "2026-02-24T08:15:30",
            "2026-02-24T08:15:30.Z",
            "2026-02-24T08:15:30Zjunk",
            "２026-02-24T08:15:30Z",
        ] {
            let err = Timestamp::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn round_trips_across_eras_and_leap_days() {
        for ms in [
            0,
            -1,
            951_782_400_000,   // 2000-02-29
            1_771_920_930_123, // 2026
            4_102_444_799_999, // 2099-12-31T23:59:59.999
        ] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t, "{t}");
        }
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn weekday_is_monday_based() {
        // 2026-02-23 is a Monday.
        assert_eq!(
            Timestamp::parse("2026-02-23T12:00:00Z").unwrap().weekday(),
            0
        );
        assert_eq!(
            Timestamp::parse("2026-03-01T12:00:00Z").unwrap().weekday(),
            6
        );
    }
}
