//! A format compiled once into pieces (literal bytes, atoms with their conversion), so a line
//! costs one pass over them and only the work its atoms need. The grammar is accessformat.py's,
//! including its corners: an atom is `%(NAME)` plus a conversion matching
//! `[-#0 +]*\d*(?:\.\d+)?[sdifr]`, found leftmost first; anything else is literal text, where
//! `%%` and a lone `%` both stand for `%` (and NUL, an artefact of Python's escaping, for `%`
//! too). `json` is the JSON-lines form. Where Python accepts a format but fails on every line
//! (a text atom converted as a number: `%(h)d`), compiling fails here instead.

use super::atoms::{self, last, Atom};
use super::clock;
use super::entry::Entry;
use super::pytext::{self, Conv, ALT, BLANK, LJUST, SIGN, ZERO};

/// gunicorn's default format (accessformat.py's DEFAULT_FORMAT, the master's default too).
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// The word that selects one JSON object per line instead of a format.
pub const JSON: &str = "json";
/// Widths and precisions past this are refused (Python would pad every line to them).
const MAX_WIDTH: usize = 1 << 20;

/// A compiled access log format.
#[derive(Clone, Debug)]
pub struct Format {
    body: Body,
    wants_response_headers: bool,
    needs_time: bool,
}

#[derive(Clone, Debug)]
enum Body {
    /// The process id, fixed when compiled, as `p` is.
    Json {
        pid: u32,
    },
    Pieces(Vec<Piece>),
}

#[derive(Clone, Debug)]
enum Piece {
    Literal(Vec<u8>),
    /// `plain`: the conversion leaves the value's text as it is (`%s`, or `%d` of a number).
    Atom {
        atom: Atom,
        conv: Conv,
        plain: bool,
    },
}

impl Format {
    /// Compiles `spec` as the Python runtime does; the error names the atom and what is allowed.
    /// Compile in the worker (after the fork): `p` and the JSON `pid` are fixed here.
    pub fn compile(spec: &str) -> Result<Format, String> {
        let pid = std::process::id();
        if spec == JSON {
            let body = Body::Json { pid };
            return Ok(Format {
                body,
                wants_response_headers: false,
                needs_time: true,
            });
        }
        let pid = format!("<{pid}>");
        let mut pieces = Vec::new();
        let (mut literal_from, mut at) = (0, 0);
        while let Some(found) = spec[at..].find("%(") {
            let start = at + found;
            let Some(close) = spec[start + 2..].find(')').map(|c| start + 2 + c) else {
                break; // no `)` further on: no atom can match from here
            };
            let Some((conv, len)) = parse_conversion(&spec[close + 1..])? else {
                at = start + 1; // not an atom here; the search goes on from the next character
                continue;
            };
            pieces.push(Piece::Literal(literal(&spec[literal_from..start])));
            let text = &spec[start..close + 1 + len];
            pieces.push(atom_piece(&spec[start + 2..close], conv, text, &pid)?);
            at = close + 1 + len;
            literal_from = at;
        }
        pieces.push(Piece::Literal(literal(&spec[literal_from..])));
        pieces.retain(|p| !matches!(p, Piece::Literal(l) if l.is_empty()));
        let uses = |f: fn(&Atom) -> bool| {
            pieces
                .iter()
                .any(|p| matches!(p, Piece::Atom { atom, .. } if f(atom)))
        };
        Ok(Format {
            wants_response_headers: uses(|a| matches!(a, Atom::ResponseHeader(_))),
            needs_time: uses(|a| matches!(a, Atom::Time)),
            body: Body::Pieces(pieces),
        })
    }

    /// Whether `Entry::response_headers` must be given: a `{name}o` atom reads them.
    pub fn wants_response_headers(&self) -> bool {
        self.wants_response_headers
    }

    /// Appends the line for `entry`, with its `\n`.
    pub fn render(&self, entry: &Entry, out: &mut Vec<u8>) {
        self.render_at(entry, if self.needs_time { clock::now() } else { 0 }, out);
    }

    /// `render` at a given second since the epoch (the tests pin the clock with it).
    pub(crate) fn render_at(&self, entry: &Entry, second: i64, out: &mut Vec<u8>) {
        match &self.body {
            Body::Json { pid } => json(entry, &clock::stamp(second).iso, *pid, out),
            Body::Pieces(pieces) if self.needs_time => {
                write_pieces(pieces, entry, &clock::stamp(second).common, out)
            }
            Body::Pieces(pieces) => write_pieces(pieces, entry, "", out),
        }
        out.push(b'\n');
    }
}

fn write_pieces(pieces: &[Piece], entry: &Entry, time: &str, out: &mut Vec<u8>) {
    for piece in pieces {
        match piece {
            Piece::Literal(bytes) => out.extend_from_slice(bytes),
            Piece::Atom {
                atom, plain: true, ..
            } => atom.write_text(entry, time, out),
            Piece::Atom { atom, conv, .. } => match atom.number(entry) {
                Some(n) => pytext::format_int(conv, n, out),
                None => {
                    let mut raw = Vec::new();
                    atom.write_text(entry, time, &mut raw);
                    let text = String::from_utf8_lossy(&raw); // always UTF-8 already
                    let text = if conv.kind == b'r' {
                        pytext::repr(&text).into()
                    } else {
                        text
                    };
                    pytext::pad_text(conv, &text, out);
                }
            },
        }
    }
}

/// Literal text as Python's template renders it: `%%` and `%` (and NUL) are `%`.
fn literal(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let (byte, len) = match bytes[i] {
            b'%' if bytes.get(i + 1) == Some(&b'%') => (b'%', 2),
            b'\0' => (b'%', 1),
            b => (b, 1),
        };
        out.push(byte);
        i += len;
    }
    out
}

/// The conversion at the start of `text` and its length, `None` if there is none there.
fn parse_conversion(text: &str) -> Result<Option<(Conv, usize)>, String> {
    let b = text.as_bytes();
    let flags_len = b.iter().take_while(|c| b"-+ #0".contains(c)).count();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let width_end = flags_len + digits(flags_len);
    let mut end = width_end;
    let mut precision = None;
    if b.get(end) == Some(&b'.') {
        let n = digits(end + 1);
        if n == 0 {
            return Ok(None);
        }
        precision = Some(&text[end + 1..end + 1 + n]);
        end += 1 + n;
    }
    let Some(&kind @ (b's' | b'd' | b'i' | b'f' | b'r')) = b.get(end) else {
        return Ok(None);
    };
    let flags = b[..flags_len].iter().fold(0, |flags, c| {
        flags
            | match c {
                b'-' => LJUST,
                b'+' => SIGN,
                b' ' => BLANK,
                b'#' => ALT,
                _ => ZERO,
            }
    });
    let width = number(&text[flags_len..width_end])?;
    let precision = precision.map(number).transpose()?;
    Ok(Some((
        Conv {
            flags,
            width,
            precision,
            kind,
        },
        end + 1,
    )))
}

fn number(digits: &str) -> Result<usize, String> {
    match digits.parse::<usize>() {
        _ if digits.is_empty() => Ok(0),
        Ok(n) if n <= MAX_WIDTH => Ok(n),
        _ => Err(format!(
            "the width or precision {digits} is too big (at most {MAX_WIDTH})"
        )),
    }
}

/// The atom `name` (between `%(` and `)`) names, with its conversion; `text` is all of it.
fn atom_piece(name: &str, conv: Conv, text: &str, pid: &str) -> Result<Piece, String> {
    let atom = match atoms::letter(name, pid) {
        Some(atom) => atom,
        None if name.starts_with('{')
            && name.contains('}')
            && (name.ends_with("}i") || name.ends_with("}o") || name.ends_with("}e")) =>
        {
            let key = name[1..name.len() - 2].to_lowercase();
            match name.as_bytes()[name.len() - 1] {
                b'i' => Atom::RequestHeader(atoms::header_name(&key)?),
                b'o' => Atom::ResponseHeader(atoms::header_name(&key)?),
                _ => atoms::environ(&key)?,
            }
        }
        None => {
            return Err(format!(
                "unknown access log atom %({name})s: use gunicorn's atoms (h l u t r m U q H s \
                 B b f a T M D L p, {{header}}i, {{header}}o, {{variable}}e)"
            ))
        }
    };
    let number = atom.is_number();
    if !number && matches!(conv.kind, b'd' | b'i' | b'f') {
        return Err(format!(
            "the access log atom {text} converts text as a number, which fails on every line \
             in Python (TypeError): write %({name})s"
        ));
    }
    let plain = conv.flags == 0
        && conv.width == 0
        && conv.precision.is_none()
        && (conv.kind == b's' || (number && conv.kind != b'f'));
    Ok(Piece::Atom { atom, conv, plain })
}

/// The JSON-lines form: accessformat.py's `_render_json`, keys in its order, no spaces.
fn json(entry: &Entry, time: &str, pid: u32, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, key: &str, value: &str| {
        out.extend_from_slice(key.as_bytes());
        pytext::json_string(out, value.chars());
    };
    let mut scratch = Vec::new();
    text(out, "{\"time\":", time);
    atoms::remote_host(entry, &mut scratch);
    text(out, ",\"remote_addr\":", &String::from_utf8_lossy(&scratch));
    text(out, ",\"method\":", entry.method);
    scratch.clear();
    atoms::decoded_path(entry.path, &mut scratch);
    text(out, ",\"path\":", &String::from_utf8_lossy(&scratch));
    out.extend_from_slice(b",\"query\":");
    pytext::json_string(out, pytext::latin1_chars(entry.query.as_bytes()));
    text(out, ",\"protocol\":", entry.version);
    let numbers = format!(
        ",\"status\":{},\"bytes\":{},\"duration_ms\":",
        entry.status, entry.body_bytes
    );
    out.extend_from_slice(numbers.as_bytes());
    pytext::json_round3(out, entry.duration.as_secs_f64() * 1000.0);
    for (key, name) in [
        (",\"referer\":", http::header::REFERER),
        (",\"user_agent\":", http::header::USER_AGENT),
    ] {
        out.extend_from_slice(key.as_bytes());
        match last(entry.request_headers, &name) {
            Some(value) => pytext::json_string(out, pytext::latin1_chars(value)),
            None => pytext::json_string(out, "-".chars()),
        }
    }
    out.extend_from_slice(format!(",\"pid\":{pid}}}").as_bytes());
}
