//! `user`, `group` and `umask`: who the workers run as. Names are resolved here, when the
//! configuration is loaded (at start and on every reload), with the system's name service; the
//! spawner then only copies numbers, so nothing between fork and exec ever calls into NSS.
//!
//! The master keeps its own identity (it must bind, own its pidfile and control socket, and
//! signal its workers); only workers change. Changing identity needs root: a master that is not
//! root may only name its own uid and gid, which changes nothing.

use super::error::Invalid;
use super::layer::Raw;
use crate::config::{Group, User};
use nix::unistd::{Gid, Uid};
use std::ffi::CString;

/// A name or a numeric id, as written.
fn given(raw: &Raw, example: &str) -> Result<String, Invalid> {
    match raw {
        Raw::Text(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Raw::Int(n) if *n >= 0 => Ok(n.to_string()),
        other => {
            let problem = format!("must be a name or a numeric id, got {}", other.describe());
            Err(Invalid::examples(problem, &[example]))
        }
    }
}

fn numeric(text: &str) -> Option<u32> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// `user`: a name known to the system, or a numeric uid (which need not have a passwd entry).
pub fn user(raw: &Raw) -> Result<User, Invalid> {
    let given = given(raw, "\"www-data\"")?;
    let entry = match numeric(&given) {
        Some(uid) => nix::unistd::User::from_uid(Uid::from_raw(uid)),
        None => nix::unistd::User::from_name(&given),
    };
    let entry = entry.map_err(|errno| {
        let problem = format!("{given:?} could not be looked up ({errno})");
        Invalid::advice(problem, "check the system's user database (nsswitch.conf)")
    })?;
    match (entry, numeric(&given)) {
        (Some(entry), _) => Ok(User {
            given,
            uid: entry.uid.as_raw(),
            name: Some(entry.name),
            gid: Some(entry.gid.as_raw()),
            home: Some(entry.dir),
            groups: Vec::new(),
        }),
        (None, Some(uid)) => Ok(User {
            given,
            uid,
            name: None,
            gid: None,
            home: None,
            groups: Vec::new(),
        }),
        (None, None) => Err(Invalid::advice(
            format!("names no user on this system, got {given:?}"),
            "give an existing user name or a numeric uid (`getent passwd` lists them)",
        )),
    }
}

/// `group`: a name known to the system, or a numeric gid.
pub fn group(raw: &Raw) -> Result<Group, Invalid> {
    let given = given(raw, "\"www-data\"")?;
    if let Some(gid) = numeric(&given) {
        return Ok(Group { given, gid });
    }
    match nix::unistd::Group::from_name(&given) {
        Ok(Some(entry)) => Ok(Group {
            given,
            gid: entry.gid.as_raw(),
        }),
        Ok(None) => Err(Invalid::advice(
            format!("names no group on this system, got {given:?}"),
            "give an existing group name or a numeric gid (`getent group` lists them)",
        )),
        Err(errno) => Err(Invalid::advice(
            format!("{given:?} could not be looked up ({errno})"),
            "check the system's group database (nsswitch.conf)",
        )),
    }
}

/// The workers' gid: `group` if given, else the user's primary group.
pub fn workers_gid(user: Option<&User>, group: Option<&Group>) -> Option<u32> {
    group.map(|g| g.gid).or_else(|| user.and_then(|u| u.gid))
}

/// A uid without a passwd entry and no `group`: nothing says which gid the workers get.
pub fn no_primary_group(uid: u32) -> Invalid {
    let problem = format!("is uid {uid}, which has no passwd entry and so no primary group");
    Invalid::advice(problem, "set `group` too (a name or a numeric gid)")
}

/// Fills `user.groups`: the account's memberships plus `gid`, or only `gid` for a uid without a
/// passwd entry.
pub fn supplementary_groups(user: &User, gid: u32) -> Result<Vec<u32>, Invalid> {
    let Some(name) = &user.name else {
        return Ok(vec![gid]);
    };
    let c_name = CString::new(name.as_str()).map_err(|_| {
        Invalid::advice(
            format!("user name {name:?} contains a NUL byte"),
            "give a numeric uid",
        )
    })?;
    let groups = nix::unistd::getgrouplist(&c_name, Gid::from_raw(gid)).map_err(|errno| {
        let problem = format!("the groups of {name:?} could not be listed ({errno})");
        Invalid::advice(problem, "check the system's group database (nsswitch.conf)")
    })?;
    let mut groups: Vec<u32> = groups.into_iter().map(Gid::as_raw).collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(groups)
}

/// Whether a master running as `euid`/`egid` can give its workers `uid`/`gid`: root can; anyone
/// else only keeps their own. The problem names the key at fault: `Err((is_user, invalid))`.
pub fn check_can_switch(
    euid: u32,
    egid: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), (bool, Invalid)> {
    if euid == 0 {
        return Ok(());
    }
    let advice = "start herdsman as root (the master keeps root; only the workers switch), or \
                  leave the setting out";
    if let Some(uid) = uid.filter(|&uid| uid != euid) {
        let problem =
            format!("is uid {uid}, but herdsman runs as uid {euid}: only root can switch users");
        return Err((true, Invalid::advice(problem, advice)));
    }
    if let Some(gid) = gid.filter(|&gid| gid != egid) {
        let problem =
            format!("is gid {gid}, but herdsman runs as gid {egid}: only root can switch groups");
        return Err((false, Invalid::advice(problem, advice)));
    }
    Ok(())
}

/// `umask`: octal text, `"027"`, `"0027"` or `"0o027"`, at most `0o777`. A TOML number is
/// refused (except 0): `umask = 22` would be decimal 22, i.e. `0o026`, not what was meant.
pub fn umask(raw: &Raw) -> Result<u32, Invalid> {
    const EXAMPLES: &[&str] = &["\"027\"", "\"0o022\""];
    let text = match raw {
        Raw::Int(0) => return Ok(0),
        Raw::Text(text) => text.trim(),
        Raw::Int(n) => {
            let problem = format!(
                "must be an octal string such as \"027\", got an integer {n} (a TOML number \
                 cannot say whether it was meant as octal)"
            );
            return Err(Invalid::examples(problem, EXAMPLES));
        }
        other => {
            let problem = format!(
                "must be an octal string such as \"027\", got {}",
                other.describe()
            );
            return Err(Invalid::examples(problem, EXAMPLES));
        }
    };
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    let valid = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| b.is_ascii_digit() && b < b'8');
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if valid && mask <= 0o777 => Ok(mask),
        _ => {
            let problem = format!(
                "must be octal digits (0-7) from 000 to 777, got {}",
                raw.describe()
            );
            Err(Invalid::examples(problem, EXAMPLES))
        }
    }
}

/// `mask` as `umask` reads it back: `"0o027"`.
pub fn format_umask(mask: u32) -> String {
    format!("0o{mask:03o}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Raw {
        Raw::Text(s.to_string())
    }

    #[test]
    fn umask_is_octal_text() {
        for (given, mask) in [
            ("027", 0o027),
            ("0o027", 0o027),
            ("0027", 0o027),
            ("22", 0o022),
        ] {
            assert_eq!(umask(&text(given)), Ok(mask), "{given}");
        }
        assert_eq!(umask(&text("777")), Ok(0o777));
        assert_eq!(umask(&Raw::Int(0)), Ok(0));
        for bad in ["", "8", "0o1000", "abc", "-1", "0x1f", "07777"] {
            assert!(umask(&text(bad)).is_err(), "{bad}");
        }
        let error = umask(&Raw::Int(22)).unwrap_err();
        assert!(error.problem.contains("cannot say whether"), "{error:?}");
        assert_eq!(format_umask(0o27), "0o027");
        assert_eq!(umask(&text(&format_umask(0o7))), Ok(0o7));
    }

    #[test]
    fn users_and_groups_resolve_by_name_or_number() {
        let root = user(&text("root")).expect("root exists");
        assert_eq!((root.uid, root.gid), (0, Some(0)));
        assert_eq!(root.name.as_deref(), Some("root"));
        let by_number = user(&Raw::Int(0)).expect("uid 0 exists");
        assert_eq!(by_number.name.as_deref(), Some("root"));
        let unknown_uid = user(&text("4000000000")).expect("a bare uid needs no entry");
        assert_eq!((unknown_uid.uid, unknown_uid.gid), (4_000_000_000, None));
        let error = user(&text("no-such-user-herdsman")).unwrap_err();
        assert!(error.problem.starts_with("names no user"), "{error:?}");
        assert_eq!(group(&text("root")).map(|g| g.gid), Ok(0));
        assert_eq!(group(&text("1234")).map(|g| g.gid), Ok(1234));
        assert!(group(&text("no-such-group-herdsman")).is_err());
        assert!(user(&Raw::Int(-1)).is_err());
    }

    #[test]
    fn supplementary_groups_include_the_workers_group() {
        let root = user(&text("root")).expect("root exists");
        let groups = supplementary_groups(&root, 4242).expect("getgrouplist");
        // Memberships come from the group database; the workers' group is always there.
        assert!(groups.contains(&4242), "{groups:?}");
        let bare = user(&text("4000000000")).expect("bare uid");
        assert_eq!(supplementary_groups(&bare, 7), Ok(vec![7]));
    }

    #[test]
    fn only_root_can_switch() {
        assert!(check_can_switch(0, 0, Some(65534), Some(65534)).is_ok());
        assert!(check_can_switch(1000, 1000, Some(1000), Some(1000)).is_ok());
        assert!(check_can_switch(1000, 1000, None, None).is_ok());
        let (is_user, invalid) = check_can_switch(1000, 1000, Some(0), None).unwrap_err();
        assert!(is_user && invalid.problem.contains("only root can switch users"));
        let (is_user, _) = check_can_switch(1000, 1000, Some(1000), Some(5)).unwrap_err();
        assert!(!is_user);
    }
}
