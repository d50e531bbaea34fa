//! `access_log_format`: gunicorn's access log format, checked before any worker starts so a
//! typo is a config error that names the atom, not a worker that cannot boot. The worker runtime
//! (python/herdsman/runtime/accessformat.py) formats the lines; the grammar here is the same:
//! `%(NAME)s`-style atoms with a printf conversion, where NAME is one of gunicorn's letters or
//! `{header}i`, `{header}o`, `{variable}e`; or the single word `json`.

/// gunicorn's default format (its `access_log_format`).
pub const DEFAULT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// One JSON object per line instead of a format.
pub const JSON: &str = "json";
/// The one-letter atoms.
pub const ATOMS: &str = "hlutrmUqHsBbfaTMDLp";

/// Checks `format`; the error says which atom is wrong and what is allowed.
pub fn check(format: &str) -> Result<(), String> {
    if format == JSON {
        return Ok(());
    }
    let mut rest = format;
    while let Some(start) = rest.find("%(") {
        let after = &rest[start + 2..];
        let Some(close) = after.find(')') else {
            return Err(format!("an atom is not closed: {:?}", &rest[start..]));
        };
        let name = &after[..close];
        if !known(name) {
            return Err(format!(
                "unknown atom %({name})s: the atoms are gunicorn's ({}, {{header}}i, {{header}}o, \
                 {{variable}}e), or the format is \"json\"",
                ATOMS
                    .chars()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        let tail = &after[close + 1..];
        let spec = tail.trim_start_matches(|c: char| "-#0 +.".contains(c) || c.is_ascii_digit());
        if !spec.starts_with(['s', 'd', 'i', 'f', 'r']) {
            return Err(format!(
                "atom %({name}) needs a conversion after it, as in %({name})s"
            ));
        }
        rest = &spec[1..];
    }
    Ok(())
}

fn known(name: &str) -> bool {
    if name.len() == 1 {
        return ATOMS.contains(name);
    }
    let braced = name.len() > 3 && name.starts_with('{');
    braced && (name.ends_with("}i") || name.ends_with("}o") || name.ends_with("}e"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorns_default_and_every_atom_are_accepted() {
        assert_eq!(check(DEFAULT), Ok(()));
        assert_eq!(check(JSON), Ok(()));
        let all: String = ATOMS.chars().map(|c| format!("%({c})s ")).collect();
        assert_eq!(check(&all), Ok(()));
        assert_eq!(
            check("%({x-request-id}i)s %({content-type}o)s %({remote_addr}e)s %(s)3d 100%%"),
            Ok(())
        );
    }

    #[test]
    fn an_unknown_or_unfinished_atom_is_named() {
        let unknown = check("%(h)s %(z)s").unwrap_err();
        assert!(
            unknown.contains("%(z)s") && unknown.contains("gunicorn"),
            "{unknown}"
        );
        assert!(check("%(h").unwrap_err().contains("not closed"));
        assert!(check("%(h) ").unwrap_err().contains("conversion"));
        assert!(check("%({nope)s").is_err());
    }
}
