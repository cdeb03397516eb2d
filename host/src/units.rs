//! Human units on the command line and in messages: `2s`, `500ms`, `64MiB`.

use std::time::Duration;

/// A unit string that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {hint}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    hint: &'static str,
}

fn split_number(input: &str) -> Option<(f64, &str)> {
    let input = input.trim();
    let end = input
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(input.len());
    let number: f64 = input[..end].parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some((number, input[end..].trim()))
}

/// Parses a duration: a number with `ns`, `us`, `ms`, `s`, `m` or `h`
/// (`1.5s`, `250ms`, `2m`). A bare number is seconds.
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    let error = || ParseError {
        what: "duration",
        input: input.to_owned(),
        hint: "use a number with a unit, like 2s, 500ms or 1m",
    };
    let (number, unit) = split_number(input).ok_or_else(error)?;
    let seconds = match unit {
        "ns" => number / 1e9,
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "" | "s" | "sec" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(error()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| error())
}

/// Parses a size in bytes: a number with `B`, `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB` (binary multiples) or `KB`/`MB`/`GB` (decimal). A bare number is
/// bytes.
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let error = || ParseError {
        what: "size",
        input: input.to_owned(),
        hint: "use a number with a unit, like 64MiB, 512KiB or 1GiB",
    };
    let (number, unit) = split_number(input).ok_or_else(error)?;
    let multiplier: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(error()),
    };
    let bytes = (number * multiplier).round();
    if bytes > u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

/// Formats a size with a binary unit: `32 MiB`, `1.5 GiB`, `812 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Formats a duration the way it is usually written: `1s`, `1.5s`, `250ms`,
/// `42µs`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 1.0 {
        let text = format!("{secs:.3}");
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    } else if duration.as_millis() >= 1 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}µs", duration.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1e400").is_err());
        assert_eq!(format_size(32 << 20), "32 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(100), "100 B");
    }
}
