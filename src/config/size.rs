//! Byte sizes, for `max_worker_memory`. Accepted: a whole number of bytes (`1048576`), or a
//! number with a unit, `KB`, `MB`, `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of
//! 1024), in any case and with or without a space: `512MiB`, `800 mb`, `1.5GiB`. A fraction needs
//! a unit and is rounded down to a whole byte. Bare `K`/`M`/`G` are rejected rather than guessed:
//! half the world reads them as powers of 1000, the other half as powers of 1024.
//!
//! `format` writes a size back in the largest unit that holds it exactly, so what `herdsman
//! check` prints parses back to the same number of bytes.

use super::error::Invalid;
use super::layer::Raw;

/// The units, largest first (the order `format` tries them in).
const UNITS: [(&str, u64); 6] = [
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
];

/// Accepted values, as TOML literals, for messages.
pub const EXAMPLES: &[&str] = &["\"512MiB\"", "\"1GiB\""];

/// Fraction digits taken into account; more cannot change the result by a whole byte.
const MAX_FRACTION_DIGITS: usize = 18;

/// `text` (already trimmed) as a number of bytes.
pub fn parse(text: &str) -> Result<u64, Invalid> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    let Some((whole, fraction)) = split_number(number) else {
        return Err(syntax(text));
    };
    let multiplier = match unit_multiplier(unit) {
        Some(multiplier) => multiplier,
        None if unit.is_empty() => return Err(syntax(text)),
        None => return Err(unknown_unit(number, unit)),
    };
    if multiplier == 1 && !fraction.is_empty() {
        return Err(syntax(text));
    }
    bytes(whole, fraction, multiplier).ok_or_else(|| too_large(text))
}

/// `size` in the largest unit that holds it exactly (`"512MiB"`), else in bytes (`"1000001"`).
pub fn format(size: u64) -> String {
    UNITS
        .iter()
        .find(|(_, multiplier)| size > 0 && size % multiplier == 0)
        .map_or_else(
            || size.to_string(),
            |(unit, multiplier)| format!("{}{unit}", size / multiplier),
        )
}

/// `"12.5"` to `("12", "5")`, `"12"` to `("12", "")`; `None` unless digits (dot digits).
fn split_number(number: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let fraction_ok = digits(fraction) || !number.contains('.');
    (digits(whole) && fraction_ok).then_some((whole, fraction))
}

/// Bytes per `unit`; 1 for no unit; `None` for an unknown one.
fn unit_multiplier(unit: &str) -> Option<u64> {
    if unit.is_empty() {
        return Some(1);
    }
    UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|(_, multiplier)| *multiplier)
}

/// `whole.fraction × multiplier`, rounded down; `None` if it does not fit in a `u64`.
fn bytes(whole: &str, fraction: &str, multiplier: u64) -> Option<u64> {
    let whole: u64 = whole.parse().ok()?;
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let part = match fraction {
        "" => 0,
        digits => {
            let scale = 10u128.pow(u32::try_from(digits.len()).ok()?);
            let numerator: u128 = digits.parse().ok()?;
            u64::try_from(numerator * u128::from(multiplier) / scale).ok()?
        }
    };
    whole.checked_mul(multiplier)?.checked_add(part)
}

fn syntax(text: &str) -> Invalid {
    let problem = format!(
        "must be a size such as \"512MiB\", \"1GiB\" or \"800MB\" (a bare number means bytes), \
         got {}",
        Raw::Text(text.to_string()).describe()
    );
    Invalid::examples(problem, EXAMPLES)
}

fn unknown_unit(number: &str, unit: &str) -> Invalid {
    let problem = format!(
        "has an unknown unit {unit:?}; the units are KB, MB, GB (powers of 1000) and KiB, MiB, \
         GiB (powers of 1024)"
    );
    let prefix = unit
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| matches!(c, 'K' | 'M' | 'G'))
        .unwrap_or('M');
    let binary = format!("\"{number}{prefix}iB\"");
    let decimal = format!("\"{number}{prefix}B\"");
    Invalid::examples(problem, &[&binary, &decimal])
}

fn too_large(text: &str) -> Invalid {
    Invalid::examples(format!("is too large, got {text}"), EXAMPLES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fix;

    #[test]
    fn units_are_powers_of_1000_or_1024_in_any_case() {
        let cases = [
            ("1048576", 1_048_576),
            ("0", 0),
            ("1KB", 1_000),
            ("1kib", 1_024),
            ("512MiB", 512 << 20),
            ("512 MiB", 512 << 20),
            ("512mib", 512 << 20),
            ("800MB", 800_000_000),
            ("800 mb", 800_000_000),
            ("2GB", 2_000_000_000),
            ("2GiB", 2 << 30),
            ("2 gIb", 2 << 30),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn fractions_need_a_unit_and_round_down() {
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("0.5 MB"), Ok(500_000));
        assert_eq!(parse("1.0001KiB"), Ok(1_024));
        assert_eq!(parse("1.3KiB"), Ok(1_331));
        assert!(parse("1.5").is_err());
        assert!(parse("1.").is_err());
        assert!(parse(".5GiB").is_err());
        assert!(parse("1.2.3MiB").is_err());
    }

    #[test]
    fn nonsense_is_rejected_with_examples() {
        for bad in ["", "lots", "-5MiB", "MiB", "1_000", "5 MiB extra"] {
            let invalid = parse(bad).expect_err(bad);
            assert!(
                invalid.problem.starts_with("must be a size such as")
                    || invalid.problem.starts_with("has an unknown unit"),
                "{bad}: {invalid:?}"
            );
        }
        let invalid = parse("lots").unwrap_err();
        assert!(
            invalid.problem.ends_with("got a string \"lots\""),
            "{invalid:?}"
        );
        assert_eq!(
            invalid.fix,
            Fix::Examples(vec!["\"512MiB\"".into(), "\"1GiB\"".into()])
        );
    }

    #[test]
    fn ambiguous_or_unknown_units_suggest_both_readings() {
        let invalid = parse("512M").unwrap_err();
        assert!(
            invalid.problem.starts_with("has an unknown unit \"M\""),
            "{invalid:?}"
        );
        assert_eq!(
            invalid.fix,
            Fix::Examples(vec!["\"512MiB\"".into(), "\"512MB\"".into()])
        );
        let invalid = parse("2 g").unwrap_err();
        assert_eq!(
            invalid.fix,
            Fix::Examples(vec!["\"2GiB\"".into(), "\"2GB\"".into()])
        );
        assert!(parse("1TB").is_err());
        assert!(parse("100B").is_err());
    }

    #[test]
    fn sizes_past_u64_are_too_large() {
        assert_eq!(parse("18446744073709551615"), Ok(u64::MAX));
        let invalid = parse("18446744073709551616").unwrap_err();
        assert!(invalid.problem.starts_with("is too large"), "{invalid:?}");
        assert!(parse("17179869184GiB").is_err());
        assert!(parse("17179869183.99999999999999999999GiB").is_ok());
    }

    #[test]
    fn format_uses_the_largest_exact_unit_and_parses_back() {
        let cases = [
            (512 << 20, "512MiB"),
            (1 << 30, "1GiB"),
            (3 << 29, "1536MiB"),
            (2_000_000_000, "2GB"),
            (1_024_000_000, "1024MB"),
            (1_000_001, "1000001"),
            (0, "0"),
            (u64::MAX, "18446744073709551615"),
        ];
        for (size, text) in cases {
            assert_eq!(format(size), text);
            assert_eq!(parse(text), Ok(size), "{text}");
        }
    }
}
