//! Python's text rules that a line depends on, reproduced exactly where the Python runtime's
//! output depends on them: the `%` conversions of an atom (`%(s)5d`, `%(h)-15s`, `%(U)r`:
//! CPython's `unicode_format_arg_output`), `repr()` of text, `json.dumps` of a string
//! (`ensure_ascii`) and of a float (`repr`), and bytes decoded as latin-1. Everything here writes
//! UTF-8 into a `Vec<u8>` (the Python writer encodes its lines as UTF-8), so the output is always
//! valid UTF-8.

use std::fmt::Write as _;

pub const LJUST: u8 = 1;
pub const SIGN: u8 = 2;
pub const BLANK: u8 = 4;
pub const ALT: u8 = 8;
pub const ZERO: u8 = 16;

/// One `%` conversion, as accessformat.py's ATOM pattern admits it:
/// `[-#0 +]*\d*(?:\.\d+)?[sdifr]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub flags: u8,
    pub width: usize,
    pub precision: Option<usize>,
    /// `s`, `d`, `i`, `f` or `r`.
    pub kind: u8,
}

/// `%s`/`%r` of text already converted (`str()` or `repr()`): precision cuts, width pads.
pub fn pad_text(conv: &Conv, text: &str, out: &mut Vec<u8>) {
    let cut = match conv.precision {
        Some(p) => text
            .char_indices()
            .nth(p)
            .map_or(text, |(at, _)| &text[..at]),
        None => text,
    };
    let len = cut.chars().count();
    let pad = conv.width.saturating_sub(len);
    if conv.flags & LJUST == 0 {
        out.resize(out.len() + pad, b' ');
    }
    out.extend_from_slice(cut.as_bytes());
    if conv.flags & LJUST != 0 {
        out.resize(out.len() + pad, b' ');
    }
}

/// A number (every numeric atom is a non-negative integer) under any conversion.
pub fn format_int(conv: &Conv, value: u64, out: &mut Vec<u8>) {
    match conv.kind {
        b'd' | b'i' => {
            let digits = value.to_string();
            let zeros = conv.precision.unwrap_or(0).saturating_sub(digits.len());
            let body = "0".repeat(zeros) + &digits;
            pad_number(conv, &body, out);
        }
        b'f' => {
            let mut body = format!("{:.*}", conv.precision.unwrap_or(6), value as f64);
            if conv.flags & ALT != 0 && !body.contains('.') {
                body.push('.');
            }
            pad_number(conv, &body, out);
        }
        _ => pad_text(conv, &value.to_string(), out), // `s` and `r`: str(n) == repr(n)
    }
}

/// The numeric branch of CPython's `unicode_format_arg_output`: an optional sign (`+`, ` `),
/// zero fill after the sign when `0` is given, spaces on the right when `-` is given.
fn pad_number(conv: &Conv, body: &str, out: &mut Vec<u8>) {
    let sign = if conv.flags & SIGN != 0 {
        Some(b'+')
    } else if conv.flags & BLANK != 0 {
        Some(b' ')
    } else {
        None
    };
    let len = body.len(); // ASCII
    let mut width = conv.width.max(len);
    let fill = if conv.flags & ZERO != 0 { b'0' } else { b' ' };
    if let Some(sign) = sign {
        if fill == b'0' {
            out.push(sign);
        }
        if width > len {
            width -= 1;
        }
    }
    if width > len && conv.flags & LJUST == 0 {
        out.resize(out.len() + width - len, fill);
        width = len;
    }
    if let (Some(sign), b' ') = (sign, fill) {
        out.push(sign);
    }
    out.extend_from_slice(body.as_bytes());
    out.resize(out.len() + width - len, b' ');
}

/// Bytes decoded as latin-1 (each byte is the code point of that value), written as UTF-8.
pub fn push_latin1(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_ascii() {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if b < 0x80 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0xC0 | (b >> 6), 0x80 | (b & 0x3F)]);
        }
    }
}

/// Python's `repr(text)`.
pub fn repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x100 => _ = write!(out, "\\x{:02x}", c as u32),
            c if (c as u32) < 0x10000 => _ = write!(out, "\\u{:04x}", c as u32),
            c => _ = write!(out, "\\U{:08x}", c as u32),
        }
    }
    out.push(quote);
    out
}

/// `str.isprintable()` for one character: exact up to U+00FF (every character a latin-1 decoded
/// header can hold); above, the separators, format characters, private use and noncharacters,
/// without Unicode's table of unassigned code points (Python calls those unprintable too).
fn is_printable(c: char) -> bool {
    let n = c as u32;
    match n {
        0x20..=0x7E => true,
        0..=0xA0 | 0xAD => false,
        0xA1..=0xFF => true,
        0x1680 | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F => false,
        0x3000 | 0xFEFF | 0xFFF9..=0xFFFB | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F => false,
        0x0890 | 0x0891 | 0x08E2 | 0x180E | 0x110BD | 0x110CD | 0x13430..=0x1343F => false,
        0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F => false,
        0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF => false,
        n => n & 0xFFFE != 0xFFFE,
    }
}

/// A JSON string as `json.dumps` writes it by default (`ensure_ascii`: everything outside
/// printable ASCII as `\uXXXX`, lowercase hex, surrogate pairs above U+FFFF).
pub fn json_string(out: &mut Vec<u8>, chars: impl Iterator<Item = char>) {
    out.push(b'"');
    for c in chars {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

/// Latin-1 bytes as the characters `json_string` takes.
pub fn latin1_chars(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    bytes.iter().map(|&b| char::from(b))
}

/// `repr(round(x, 3))`, as `json.dumps` writes the float: `round` is correctly rounded (half to
/// even on the exact binary value, as Rust's fixed-precision formatting is), `repr` the shortest
/// text that reads back the same, with `.0` on whole numbers and an exponent past 1e16.
pub fn json_round3(out: &mut Vec<u8>, x: f64) {
    let rounded: f64 = format!("{x:.3}").parse().unwrap_or(x);
    out.extend_from_slice(float_repr(rounded).as_bytes());
}

/// Python's `repr(float)` for finite non-negative values.
fn float_repr(x: f64) -> String {
    if x == 0.0 {
        return "0.0".to_string();
    }
    let shortest = format!("{x:e}"); // d[.ddd]eX, the shortest digits that round-trip
    let (mantissa, exp) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp.parse::<i32>().unwrap_or(0) + 1; // x = 0.DIGITS * 10^decpt
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        return format!(
            "{first}{dot}e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.abs()
        );
    }
    let n = digits.len() as i32;
    if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    }
}
