//! Exit codes of the `herdsman` binary: one named constant each, documented in one table
//! (docs/exit-codes.md mirrors it). Scripts and supervisors rely on these numbers: never reuse one
//! for a different meaning.

/// Clean stop: a graceful or quick stop requested by a signal, or `check` found no problem.
pub const OK: i32 = 0;
/// An unexpected operating-system failure in the master (poll failed, no /dev/null, ...). A
/// failed fork is a failed boot instead: retried with backoff, WORKER_BOOT at first start.
pub const FAILURE: i32 = 1;
/// Bad command line or configuration: nothing was started.
pub const USAGE: i32 = 2;
/// Workers could not boot at first start (never became ready, crashed in lifespan startup, boot
/// timeout), after the startup attempts were used up. Same number as gunicorn's WORKER_BOOT_ERROR.
pub const WORKER_BOOT: i32 = 3;
/// The application failed to import or load at first start. Same number as gunicorn's
/// APP_LOAD_ERROR.
pub const APP_LOAD: i32 = 4;
/// A listening socket could not be set up (address in use, unix path taken, bad `fd://`).
pub const BIND: i32 = 5;
/// The Python environment is unusable: the interpreter cannot be started, or the engine (uvicorn,
/// or with `engine = "native"` its library) or the WSGI adapter is not installed. Also what
/// `herdsman check` exits with when the native engine's library is missing.
pub const PYTHON_ENV: i32 = 6;

/// Every code with its meaning, for `--help` texts and the docs test.
pub const TABLE: &[(i32, &str, &str)] = &[
    (OK, "OK", "clean stop, or `check` found no problem"),
    (
        FAILURE,
        "FAILURE",
        "unexpected operating-system failure in the master",
    ),
    (
        USAGE,
        "USAGE",
        "bad command line or configuration; nothing was started",
    ),
    (
        WORKER_BOOT,
        "WORKER_BOOT",
        "workers could not boot at first start",
    ),
    (
        APP_LOAD,
        "APP_LOAD",
        "the application failed to import at first start",
    ),
    (BIND, "BIND", "a listening socket could not be set up"),
    (
        PYTHON_ENV,
        "PYTHON_ENV",
        "the Python interpreter, uvicorn, a2wsgi or the native engine's library is missing or unusable",
    ),
];

/// The name of an exit code in [`TABLE`] (`"?"` for one that is not there).
pub fn name(code: i32) -> &'static str {
    TABLE
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("?", |(_, name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::TABLE;

    /// docs/exit-codes.md, which documents [`TABLE`] for users.
    const DOC: &str = include_str!("../docs/exit-codes.md");
    /// The heading of the section whose first table lists the master's codes.
    const SECTION: &str = "## The master";

    /// The rows of the first markdown table after `SECTION`, as trimmed cells without backticks.
    fn documented_rows() -> Vec<Vec<String>> {
        let section = DOC
            .split_once(SECTION)
            .map(|(_, rest)| rest)
            .expect("docs/exit-codes.md has a `## The master` section");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and the `|---|` separator
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().trim_matches('`').to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_exit_code_is_documented_with_its_name() {
        let rows = documented_rows();
        for &(code, name, _) in TABLE {
            let row = rows.iter().find(|row| row[0] == code.to_string());
            let row = row.unwrap_or_else(|| {
                panic!("docs/exit-codes.md: exit code {code} ({name}) is missing from the table")
            });
            assert_eq!(
                row.get(1).map(String::as_str),
                Some(name),
                "docs/exit-codes.md: exit code {code} is documented under another name"
            );
        }
    }

    #[test]
    fn the_doc_lists_no_exit_code_that_does_not_exist() {
        let rows = documented_rows();
        for row in &rows {
            assert!(
                TABLE
                    .iter()
                    .any(|&(code, name, _)| row[0] == code.to_string() && row[1] == name),
                "docs/exit-codes.md lists {row:?}, which is not in exit::TABLE"
            );
        }
        assert_eq!(rows.len(), TABLE.len(), "one row per exit code");
    }

    #[test]
    fn codes_and_names_are_unique() {
        for (i, &(code, name, _)) in TABLE.iter().enumerate() {
            for &(other_code, other_name, _) in &TABLE[i + 1..] {
                assert_ne!(code, other_code, "exit code {code} is used twice");
                assert_ne!(name, other_name, "exit code name {name} is used twice");
            }
        }
    }
}
