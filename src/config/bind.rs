//! Bind specs, gunicorn's forms: `HOST:PORT`, `[V6ADDR]:PORT`, `unix:PATH` and `fd://N`.
//! Host names (`localhost:8000`) are kept as given and resolved when the sockets are bound. A
//! spec without a host (`8000`, `:8000`) is rejected rather than guessed: listening on every
//! interface by accident is worse than a clear error. URL schemes are rejected with the fix.

use super::error::{Fix, Invalid};
use crate::config::BindSpec;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// Parses one bind spec.
pub fn parse(spec: &str) -> Result<BindSpec, Invalid> {
    if let Some(path) = spec.strip_prefix("unix:") {
        return unix(spec, path);
    }
    if let Some(fd) = spec.strip_prefix("fd://") {
        return inherited_fd(spec, fd);
    }
    if let Some((scheme, rest)) = spec.split_once("://") {
        return Err(scheme_given(spec, scheme, rest));
    }
    if spec.starts_with('[') {
        return bracketed_v6(spec);
    }
    host_port(spec)
}

fn unix(spec: &str, path: &str) -> Result<BindSpec, Invalid> {
    // `unix:///run/app.sock` is a common spelling of `unix:/run/app.sock`.
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        let problem = format!("entry {spec:?} has no socket path");
        return Err(Invalid::examples(problem, &["\"unix:/run/herdsman.sock\""]));
    }
    Ok(BindSpec::Unix(PathBuf::from(path)))
}

fn inherited_fd(spec: &str, fd: &str) -> Result<BindSpec, Invalid> {
    match fd.parse::<i32>() {
        Ok(n) if n >= 3 => Ok(BindSpec::Fd(n)),
        Ok(n) if n >= 0 => Err(Invalid::examples(
            format!("entry {spec:?} names fd {n}, which is stdin, stdout or stderr"),
            &["\"fd://3\""],
        )),
        _ => Err(Invalid::examples(
            format!("entry {spec:?} must name a file descriptor number of 3 or more"),
            &["\"fd://3\""],
        )),
    }
}

fn scheme_given(spec: &str, scheme: &str, rest: &str) -> Invalid {
    let bare = rest.trim_end_matches('/');
    Invalid::new(
        format!("entry {spec:?} has a URL scheme ({scheme}://); bind takes an address, not a URL"),
        Fix::Examples(vec![format!("{bare:?}")]),
    )
}

fn bracketed_v6(spec: &str) -> Result<BindSpec, Invalid> {
    let Some((inside, port)) = spec[1..].split_once("]:") else {
        let problem = format!("entry {spec:?} must be [IPV6]:PORT");
        return Err(Invalid::examples(problem, &["\"[::1]:8000\""]));
    };
    let address = inside.split('%').next().unwrap_or(inside);
    if address.parse::<Ipv6Addr>().is_err() {
        let problem = format!("entry {spec:?}: {inside:?} is not an IPv6 address");
        return Err(Invalid::examples(problem, &["\"[::1]:8000\""]));
    }
    let port = parse_port(spec, port)?;
    Ok(BindSpec::Tcp {
        host: inside.to_string(),
        port,
    })
}

fn host_port(spec: &str) -> Result<BindSpec, Invalid> {
    let Some((host, port)) = spec.rsplit_once(':') else {
        return Err(no_port(spec));
    };
    if host.is_empty() {
        return Err(no_host(spec, port));
    }
    if host.contains(':') {
        let problem = format!("entry {spec:?} looks like an IPv6 address without brackets");
        let fixed = format!("\"[{host}]:{port}\"");
        return Err(Invalid::new(problem, Fix::Examples(vec![fixed])));
    }
    check_host(spec, host)?;
    let port = parse_port(spec, port)?;
    Ok(BindSpec::Tcp {
        host: host.to_string(),
        port,
    })
}

/// `8000` alone: say which of the two usual meanings to write.
fn no_port(spec: &str) -> Invalid {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        return no_host(spec, spec);
    }
    let problem = format!("entry {spec:?} has no port; expected HOST:PORT, unix:PATH or fd://N");
    let example = format!(
        "\"{}:8000\"",
        if spec.is_empty() { "127.0.0.1" } else { spec }
    );
    Invalid::new(problem, Fix::Examples(vec![example]))
}

fn no_host(spec: &str, port: &str) -> Invalid {
    let problem = format!(
        "entry {spec:?} has no host (127.0.0.1 listens on this machine only, 0.0.0.0 on every \
         interface)"
    );
    let local = format!("\"127.0.0.1:{port}\"");
    let everywhere = format!("\"0.0.0.0:{port}\"");
    Invalid::new(problem, Fix::Examples(vec![local, everywhere]))
}

/// Host names and IPv4 addresses: letters, digits, `-`, `.` and `_`.
fn check_host(spec: &str, host: &str) -> Result<(), Invalid> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.chars().all(valid) {
        return Ok(());
    }
    let problem = format!("entry {spec:?}: {host:?} is not a host name or IP address");
    Err(Invalid::examples(
        problem,
        &["\"127.0.0.1:8000\"", "\"localhost:8000\""],
    ))
}

fn parse_port(spec: &str, port: &str) -> Result<u16, Invalid> {
    port.parse::<u16>().map_err(|_| {
        let problem = format!("entry {spec:?}: port {port:?} must be a number from 0 to 65535");
        Invalid::examples(problem, &["\"127.0.0.1:8000\""])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> BindSpec {
        BindSpec::Tcp {
            host: host.into(),
            port,
        }
    }

    fn rejected(spec: &str) -> Invalid {
        parse(spec).expect_err(spec)
    }

    fn fix_of(invalid: &Invalid) -> Vec<String> {
        match &invalid.fix {
            Fix::Examples(examples) => examples.clone(),
            other => panic!("expected examples, got {other:?}"),
        }
    }

    #[test]
    fn tcp_forms() {
        assert_eq!(parse("127.0.0.1:8000").unwrap(), tcp("127.0.0.1", 8000));
        assert_eq!(parse("0.0.0.0:0").unwrap(), tcp("0.0.0.0", 0));
        assert_eq!(parse("localhost:8000").unwrap(), tcp("localhost", 8000));
        assert_eq!(
            parse("my-host.example_1:65535").unwrap(),
            tcp("my-host.example_1", 65535)
        );
    }

    #[test]
    fn ipv6_forms_store_the_host_without_brackets() {
        assert_eq!(parse("[::1]:8000").unwrap(), tcp("::1", 8000));
        assert_eq!(parse("[::]:80").unwrap(), tcp("::", 80));
        assert_eq!(parse("[fe80::1%eth0]:80").unwrap(), tcp("fe80::1%eth0", 80));
    }

    #[test]
    fn ipv6_rejections() {
        assert!(rejected("[::1]").problem.contains("[IPV6]:PORT"));
        assert!(rejected("[nothex]:80")
            .problem
            .contains("not an IPv6 address"));
        assert_eq!(fix_of(&rejected("::1:8000")), ["\"[::1]:8000\""]);
    }

    #[test]
    fn unix_forms() {
        assert_eq!(
            parse("unix:/run/a.sock").unwrap(),
            BindSpec::Unix("/run/a.sock".into())
        );
        assert_eq!(
            parse("unix:rel/a.sock").unwrap(),
            BindSpec::Unix("rel/a.sock".into())
        );
        assert_eq!(
            parse("unix:///run/a.sock").unwrap(),
            BindSpec::Unix("/run/a.sock".into())
        );
        assert!(rejected("unix:").problem.contains("no socket path"));
    }

    #[test]
    fn fd_forms() {
        assert_eq!(parse("fd://3").unwrap(), BindSpec::Fd(3));
        assert_eq!(parse("fd://12").unwrap(), BindSpec::Fd(12));
        for bad in ["fd://0", "fd://1", "fd://2"] {
            assert!(
                rejected(bad).problem.contains("stdin, stdout or stderr"),
                "{bad}"
            );
        }
        for bad in ["fd://", "fd://-1", "fd://x", "fd://99999999999"] {
            assert!(rejected(bad).problem.contains("3 or more"), "{bad}");
        }
    }

    #[test]
    fn url_schemes_are_rejected_with_the_bare_address() {
        let invalid = rejected("http://0.0.0.0:8000/");
        assert!(invalid.problem.contains("URL scheme (http://)"));
        assert_eq!(fix_of(&invalid), ["\"0.0.0.0:8000\""]);
        assert!(rejected("tcp://127.0.0.1:1").problem.contains("URL scheme"));
    }

    #[test]
    fn a_port_without_host_suggests_both_meanings() {
        for spec in ["8000", ":8000"] {
            let invalid = rejected(spec);
            assert!(invalid.problem.contains("no host"), "{spec}");
            assert_eq!(fix_of(&invalid), ["\"127.0.0.1:8000\"", "\"0.0.0.0:8000\""]);
        }
    }

    #[test]
    fn other_rejections() {
        assert_eq!(fix_of(&rejected("localhost")), ["\"localhost:8000\""]);
        assert!(rejected("").problem.contains("no port"));
        assert!(rejected("host:http").problem.contains("0 to 65535"));
        assert!(rejected("host:65536").problem.contains("0 to 65535"));
        assert!(rejected("host:").problem.contains("0 to 65535"));
        assert!(rejected("my host:80").problem.contains("not a host name"));
        assert!(rejected("a/b:80").problem.contains("not a host name"));
    }
}
