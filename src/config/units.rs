//! Parsing and printing of the two unit-bearing value kinds: sizes and durations.
//!
//! Sizes follow Nx's own `maxCacheSize` vocabulary so one nx.json reads the same
//! everywhere: `B`, `KB`, `MB`, `GB`, `TB` are 1024-based, and the IEC spellings
//! `KiB`, `MiB`, `GiB`, `TiB` mean the same. A plain number is bytes.
//! Durations need a unit: `ms`, `s`, `m`, `h`, `d`, `w`.

use std::time::Duration;

/// Parses "5GB", "512 MiB", "1.5 GB" or "1048576" into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("unknown size unit {unit:?} (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)")),
    };
    let bytes = number * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err("size is too large".into());
    }
    Ok(bytes.round() as u64)
}

/// Parses "7d", "30s", "500ms", "1h30m" into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let (number, unit, tail) = split_duration_part(rest)?;
        let seconds: f64 = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            "" => return Err(format!("{trimmed:?} needs a unit (ms, s, m, h, d or w), for example \"30s\"")),
            other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h, d or w)")),
        };
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| "duration is too large".to_string())?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Prints bytes the way people read them: "5.0 GiB", "512 MiB", "900 B".
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Prints a duration in the largest units that keep it exact: "7d", "30s", "1h30m", "500ms".
/// Weeks are accepted on input but printed as days.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    const PARTS: [(u128, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
    let mut out = String::new();
    for (size, unit) in PARTS {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

fn not_a_number(text: &str) -> String {
    if text.starts_with('-') {
        format!("{text:?} cannot be negative")
    } else {
        format!("{text:?} does not start with a number")
    }
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let trimmed = text.trim();
    let end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(end);
    if digits.is_empty() {
        return Err(not_a_number(trimmed));
    }
    let number: f64 = digits.parse().map_err(|_| format!("{digits:?} is not a number"))?;
    Ok((number, unit.trim()))
}

fn split_duration_part(text: &str) -> Result<(f64, &str, &str), String> {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    if digits.is_empty() {
        return Err(not_a_number(text));
    }
    let number: f64 = digits.parse().map_err(|_| format!("{digits:?} is not a number"))?;
    let rest = rest.trim_start();
    let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    let (unit, tail) = rest.split_at(unit_end);
    Ok((number, unit, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_nx_units() {
        assert_eq!(parse_size("5GB"), Ok(5 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1.5gb"), Ok(3 << 29));
        assert_eq!(parse_size(" 10 kb "), Ok(10 << 10));
        assert!(parse_size("5 gigs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("GB").unwrap_err().contains("does not start with a number"));
        assert!(parse_size("").is_err());
        assert!(parse_size("-5GB").is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("3 fortnights").unwrap_err().contains("unknown duration unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["7d", "30s", "500ms", "1h30m", "14d", "1m1s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_size(5 << 30), "5 GiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(900), "900 B");
        assert_eq!(parse_size(&format_size(512 << 20)), Ok(512 << 20));
    }
}
