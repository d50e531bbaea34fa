//! The installed wheel, end to end: `herdsman` as `pip install` put it into a fresh venv's `bin/`
//! serves with that venv's Python without being told (no `--python`, no `VIRTUAL_ENV`, and a
//! `PATH` that holds no python of the venv), reloads on SIGHUP, stops on SIGTERM and leaves no
//! process behind; `python -m herdsman` runs the same binary in its own process; `herdsman check`
//! names the interpreter it resolved. The wheel's native engine (`herdsman/_engine.abi3.so` in
//! site-packages) is found with no `HERDSMAN_ENGINE_LIB`, named by `check --engine native`, serves
//! a WSGI app, and needs nothing the wheel's platform tag does not promise (the libraries and the
//! glibc it links: maturin checks the master it builds, not a file staged beside it).
//!
//! The binary under test is `TEST_INSTALLED_HERDSMAN` (`VENV/bin/herdsman`), which scripts/test.sh
//! always sets after building and installing the wheel. Without it these tests cannot run: they
//! say so loudly, and fail under CI (`CI=true`) instead of passing silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{http, Start};
use serde_json::Value;

/// A `PATH` without the venv: `python3` there, if any, is the system's.
const PATH_WITHOUT_VENV: &str = "/usr/local/bin:/usr/bin:/bin";

/// The installed binary and its venv, or `None` (with a loud note) when not given.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let Some(bin) = std::env::var_os("TEST_INSTALLED_HERDSMAN").map(PathBuf::from) else {
        let why = "TEST_INSTALLED_HERDSMAN is not set: the installed-wheel test did NOT run \
                   (bash scripts/test.sh builds the wheel, installs it and sets it)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        common::skip(why);
        return None;
    };
    assert!(
        bin.is_file(),
        "TEST_INSTALLED_HERDSMAN={} is missing",
        bin.display()
    );
    let venv = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary is VENV/bin/herdsman")
        .to_path_buf();
    assert!(
        venv.join("pyvenv.cfg").is_file(),
        "{} is not in a venv's bin/",
        bin.display()
    );
    assert!(
        !PATH_WITHOUT_VENV
            .split(':')
            .any(|d| Path::new(d) == venv.join("bin")),
        "the test PATH must not hold the venv"
    );
    Some((bin, venv))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that `GET /` of whoami_app was answered by the venv's own interpreter.
fn assert_served_by(venv: &Path, body: &Value) {
    let prefix = Path::new(body["prefix"].as_str().expect("prefix"));
    assert_eq!(canonical(prefix), canonical(venv), "sys.prefix: {body}");
    assert_ne!(body["prefix"], body["base_prefix"], "not a venv: {body}");
    assert_eq!(
        Path::new(body["executable"].as_str().expect("executable")),
        venv.join("bin/python"),
        "sys.executable: {body}"
    );
}

fn get_json(h: &common::Herdsman) -> Value {
    http::get(h.addr(), "/").expect("GET /").json()
}

/// The native engine the wheel installed: `herdsman/_engine.abi3.so` in the venv's platlib
/// (the wheel is not purelib), as the venv's own Python names that directory.
fn installed_engine(venv: &Path) -> PathBuf {
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('platlib'))",
        ])
        .output()
        .expect("python -c sysconfig");
    assert!(out.status.success(), "{out:?}");
    let site = String::from_utf8(out.stdout).expect("a UTF-8 path");
    let engine = Path::new(site.trim()).join("herdsman/_engine.abi3.so");
    assert!(
        engine.is_file(),
        "the wheel installed no native engine: {} is missing",
        engine.display()
    );
    engine
}

/// The platform tags of the installed wheel (`Tag:` lines of its dist-info `WHEEL`), e.g.
/// `manylinux_2_34_x86_64`.
fn platform_tags(site_packages: &Path) -> Vec<String> {
    let dist_info = std::fs::read_dir(site_packages)
        .expect("read site-packages")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("herdsman-") && name.ends_with(".dist-info")
        })
        .expect("herdsman's dist-info in site-packages");
    let wheel = std::fs::read_to_string(dist_info.join("WHEEL")).expect("dist-info/WHEEL");
    let tags: Vec<String> = wheel
        .lines()
        .filter_map(|line| line.strip_prefix("Tag: "))
        .filter_map(|tag| tag.splitn(3, '-').nth(2))
        .map(str::to_string)
        .collect();
    assert!(!tags.is_empty(), "no Tag in WHEEL:\n{wheel}");
    tags
}

/// `readelf ARGS FILE`'s output.
fn readelf(args: &[&str], file: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The glibc libraries (and the loader) the engine may need: what a Rust cdylib links. On musl,
/// its libc and loader (`libc.musl-ARCH.so.1`, `ld-musl-ARCH.so.1`) are the whole C runtime.
const C_RUNTIME: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// The `NEEDED` libraries of an ELF file.
fn needed_libraries(file: &Path) -> Vec<String> {
    readelf(&["-d", "-W"], file)
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| line.split('[').nth(1)?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

/// The newest `GLIBC_X.Y` symbol version an ELF file needs; one that is not a number
/// (`GLIBC_PRIVATE`) counts as newer than any.
fn newest_glibc(file: &Path) -> Option<(u32, u32)> {
    let number = |n: &str| n.parse::<u32>().unwrap_or(u32::MAX);
    readelf(&["-V", "-W"], file)
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .map(|version| {
            let mut parts = version.split('.');
            let major = parts.next().map_or(u32::MAX, number);
            (major, parts.next().map_or(0, number))
        })
        .max()
}

/// The oldest glibc `(major, minor)` a `manylinux_X_Y_ARCH` tag promises, if it is one.
fn manylinux_glibc(tag: &str) -> Option<(u32, u32)> {
    let mut parts = tag.strip_prefix("manylinux_")?.splitn(3, '_');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn installed_binary_serves_with_its_venv_python_reloads_and_stops() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let h = Start::new(&["-w", "2", "whoami_app:app"])
        .binary(&bin)
        .no_python()
        .env("PATH", PATH_WITHOUT_VENV)
        .spawn();
    let first = h.wait_serving();
    assert_eq!(first.len(), 2, "{}", h.log.text());
    let body = get_json(&h);
    assert_served_by(&venv, &body);
    assert!(first.contains(&(body["pid"].as_i64().expect("pid") as i32)));

    h.signal(libc::SIGHUP);
    h.wait_records("reload complete", 1);
    // The retired workers may still be draining (and accepting) until they exit.
    h.log
        .wait_for("the first workers' exits", common::WAIT, |lines| {
            let exited: Vec<i64> = lines
                .iter()
                .filter_map(|l| common::parse_record(l))
                .filter(|r| r.get("status").is_some())
                .filter_map(|r| common::field_i64(&r, "pid"))
                .collect();
            first
                .iter()
                .all(|pid| exited.contains(&i64::from(*pid)))
                .then_some(())
        });
    let body = get_json(&h);
    assert_served_by(&venv, &body);
    let pid = body["pid"].as_i64().expect("pid") as i32;
    assert!(
        !first.contains(&pid),
        "served by an old worker after the reload"
    );

    let status = h.finish();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn python_dash_m_herdsman_execs_the_installed_binary_in_its_own_process() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let python = venv.join("bin/python");
    let h = Start::new(&["-w", "1", "whoami_app:app"])
        .launcher(&[python.to_str().expect("utf-8 path"), "-m", "herdsman"])
        .no_python()
        .env("PATH", PATH_WITHOUT_VENV)
        .spawn();
    h.wait_serving();
    // Same pid: the process started as `python -m herdsman` now runs the binary itself.
    let exe = std::fs::read_link(format!("/proc/{}/exe", h.pid)).expect("/proc/PID/exe");
    assert_eq!(exe, canonical(&bin));
    assert_served_by(&venv, &get_json(&h));
    assert_eq!(h.finish().code(), Some(0));

    // The exit code is the binary's: a usage error is 2.
    let out = Command::new(&python)
        .args(["-m", "herdsman", "check", "-w", "abc", "whoami_app:app"])
        .env_remove("VIRTUAL_ENV")
        .env("PATH", PATH_WITHOUT_VENV)
        .output()
        .expect("python -m herdsman check");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn check_prints_the_interpreter_of_the_venv_it_is_installed_in() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    // A full check: the venv's interpreter imports uvicorn and the app.
    let apps = common::repo().join("tests/apps");
    let out = Command::new(&bin)
        .args([
            "check",
            "--chdir",
            apps.to_str().expect("utf-8"),
            "whoami_app:app",
        ])
        .env_remove("VIRTUAL_ENV")
        .env_remove("HERDSMAN_TEST_PYTHON")
        .env_remove("TEST_INSTALLED_HERDSMAN")
        .env("PATH", PATH_WITHOUT_VENV)
        .output()
        .expect("herdsman check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let want = format!(
        "# python resolves to {} (the Python environment herdsman is installed in)",
        venv.join("bin/python").display()
    );
    assert!(
        stdout.lines().any(|l| l == want),
        "{want:?} not in:\n{stdout}"
    ); // The wheel pulls in uvicorn: the venv's interpreter imports it and the app.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("# found Python 3.") && l.contains(", uvicorn 0.")),
        "no interpreter line with uvicorn in:\n{stdout}"
    );
    assert!(
        stdout.contains("# the app \"whoami_app:app\" imports (interface ASGI)"),
        "{stdout}"
    );
}

#[test]
fn installed_binary_serves_a_wsgi_app_with_the_wheels_native_engine() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let engine = canonical(&installed_engine(&venv));
    let h = Start::new(&["--engine", "native", "-w", "1", "wsgi_app:app"])
        .binary(&bin)
        .no_python()
        .env("PATH", PATH_WITHOUT_VENV)
        // Empty counts as unset: the master must find the library in its venv by itself.
        .env("HERDSMAN_ENGINE_LIB", "")
        .spawn();
    let workers = h.wait_serving();
    let body = get_json(&h);
    assert_eq!(body["app"], "wsgi_app", "{body}");
    let pid = body["pid"].as_i64().expect("pid") as i32;
    assert_eq!(workers, [pid], "{}", h.log.text());
    // The worker that answered runs the wheel's engine, not one from elsewhere.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("/proc/PID/maps");
    let mapped = engine.to_str().expect("a UTF-8 path");
    assert!(
        maps.lines().any(|line| line.ends_with(mapped)),
        "worker {pid} has no {mapped} mapped:\n{maps}"
    );
    assert_eq!(h.finish().code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn check_names_the_native_engine_inside_the_venvs_site_packages() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let engine = installed_engine(&venv);
    let env = [("PATH", PATH_WITHOUT_VENV), ("HERDSMAN_ENGINE_LIB", "")];
    let apps = common::repo().join("tests/apps");
    let apps = apps.to_str().expect("utf-8");
    let args = [
        "check",
        "--engine",
        "native",
        "--chdir",
        apps,
        "wsgi_app:app",
    ];
    let (code, stdout, stderr) = common::run_to_end_of(&bin, &args, &env);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let prefix = "# the native engine's library resolves to ";
    let suffix = " (in the Python environment herdsman is installed in)";
    let named = stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix)?.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("no {prefix:?}...{suffix:?} line in:\n{stdout}"));
    // The master looks from its own path (symlinks resolved): <venv>/lib/python3.*/site-packages.
    assert!(
        Path::new(named).starts_with(canonical(&venv)),
        "{named} is not in {}",
        venv.display()
    );
    assert_eq!(canonical(Path::new(named)), canonical(&engine));
}

#[test]
fn the_wheels_engine_needs_no_more_than_its_platform_tag_promises() {
    let Some((_, venv)) = installed() else {
        return;
    };
    let engine = installed_engine(&venv);
    let site_packages = engine.parent().and_then(Path::parent);
    let tags = platform_tags(site_packages.expect("site-packages"));

    // Only the C runtime: never libpython (the interpreter provides its symbols: abi3), nothing
    // beyond the base libraries of the manylinux and musllinux policies.
    let needed = needed_libraries(&engine);
    let extra: Vec<&String> = needed
        .iter()
        .filter(|lib| !C_RUNTIME.contains(&lib.as_str()) && !lib.contains("musl"))
        .collect();
    assert!(
        extra.is_empty(),
        "the engine needs {extra:?} (all: {needed:?})"
    );

    // The extension module's entry point survived the strip (it is a dynamic symbol).
    let symbols = readelf(&["--dyn-syms", "-W"], &engine);
    assert!(
        symbols
            .lines()
            .any(|l| l.ends_with(" PyInit__engine") && !l.contains(" UND ")),
        "no PyInit__engine exported:\n{symbols}"
    );

    // No glibc symbol version newer than the oldest glibc a manylinux tag promises.
    let Some(floor) = tags.iter().filter_map(|tag| manylinux_glibc(tag)).min() else {
        return common::skip(&format!(
            "the wheel's tags {tags:?} name no manylinux glibc, so there is no floor to check"
        ));
    };
    let newest = newest_glibc(&engine);
    assert!(
        newest.is_none_or(|newest| newest <= floor),
        "the engine needs glibc {newest:?}, the wheel is tagged {tags:?}"
    );
}
