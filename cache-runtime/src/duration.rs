//! The one duration parser: `const`, so that the macros evaluate it at
//! compile time (`ttl = "1.5s"` is checked by the same code that reads
//! `CACHE_DEFAULT_TTL=1.5s` at run time).
//!
//! A duration is seconds (`5`, `0.5`) or a number with a unit: `250ms`,
//! `1.5s`, `90s`, `5m`, `1h`, `1d` (also `sec`, `secs`, `min`, `mins`), with
//! optional spaces around the number and before the unit. Fractions keep
//! millisecond precision at least (nanoseconds are exact up to 9 digits).

use std::time::Duration;

const NANOS: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Nanoseconds in one of `unit`, or `None` for an unknown unit.
const fn unit_nanos(unit: &[u8]) -> Option<u64> {
    if unit.is_empty() || eq(unit, b"s") || eq(unit, b"sec") || eq(unit, b"secs") {
        Some(1_000_000_000)
    } else if eq(unit, b"ms") {
        Some(1_000_000)
    } else if eq(unit, b"m") || eq(unit, b"min") || eq(unit, b"mins") {
        Some(60_000_000_000)
    } else if eq(unit, b"h") {
        Some(3_600_000_000_000)
    } else if eq(unit, b"d") {
        Some(86_400_000_000_000)
    } else {
        None
    }
}

/// Parses a duration (see the module docs); `None` if it is not one.
pub(crate) const fn parse(text: &str) -> Option<Duration> {
    let b = text.as_bytes();
    let (mut start, mut end) = (0, b.len());
    while start < end && b[start].is_ascii_whitespace() {
        start += 1;
    }
    while end > start && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    // The integer part.
    let mut i = start;
    let mut whole: u64 = 0;
    let mut digits = 0;
    while i < end && b[i].is_ascii_digit() {
        whole = match whole.checked_mul(10) {
            Some(w) => match w.checked_add((b[i] - b'0') as u64) {
                Some(w) => w,
                None => return None,
            },
            None => return None,
        };
        digits += 1;
        i += 1;
    }
    // The fraction, to nine digits.
    let mut frac: u64 = 0;
    let mut frac_digits = 0;
    if i < end && b[i] == b'.' {
        i += 1;
        while i < end && b[i].is_ascii_digit() {
            if frac_digits < 9 {
                frac = frac * 10 + (b[i] - b'0') as u64;
                frac_digits += 1;
            }
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    while i < end && b[i] == b' ' {
        i += 1;
    }
    let (_, unit) = b.split_at(i);
    let (unit, _) = unit.split_at(end - i);
    let Some(per) = unit_nanos(unit) else {
        return None;
    };
    let nanos = match whole.checked_mul(per) {
        Some(n) => n,
        None => return None,
    };
    // frac / 10^digits of a unit, in nanoseconds.
    let part = (frac as u128 * per as u128 / NANOS[frac_digits] as u128) as u64;
    match nanos.checked_add(part) {
        Some(total) => Some(Duration::from_nanos(total)),
        None => None,
    }
}

/// Parses a duration written in a macro attribute, at compile time: a
/// value that is not a positive duration stops the compilation, at the
/// literal, with this message.
#[track_caller]
pub const fn positive(text: &str) -> Duration {
    match parse(text) {
        Some(d) if !d.is_zero() => d,
        Some(_) => panic!("a duration here must be greater than zero"),
        None => panic!(
            "not a duration: write seconds (`5`, `0.5`) or a number with a unit: `\"500ms\"`, `\"1.5s\"`, `\"90s\"`, `\"5m\"`, `\"1h\"`, `\"1d\"`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_docs_say() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("5", ms(5_000)),
            ("0.5", ms(500)),
            ("1.5s", ms(1_500)),
            ("250ms", ms(250)),
            ("90s", ms(90_000)),
            ("5m", ms(300_000)),
            ("1h", ms(3_600_000)),
            ("1d", ms(86_400_000)),
            (" 2 min ", ms(120_000)),
            ("0.001", ms(1)),
            ("1.25h", ms(4_500_000)),
        ] {
            assert_eq!(parse(text), Some(want), "{text}");
        }
        for bad in ["", "s", "5x", "5 parsecs", "-1", "1.2.3", ".", "1e3"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("99999999999999999999"), None, "overflow");
        const TTL: Duration = positive("1.5s");
        assert_eq!(TTL, ms(1_500));
    }
}
