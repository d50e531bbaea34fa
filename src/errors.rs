//! Turning an error into the one line a user reads: the error and every `source()` under it,
//! joined with ": ". Errors keep their cause in `#[source]` (STYLE.md), so this is the only
//! place that pastes a chain into text. A leaf module: it imports nothing from the crate.

/// An error and its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
