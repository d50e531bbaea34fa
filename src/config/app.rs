//! The application spec: `module:attr`, where `module` is a dotted module path and `attr` a
//! dotted attribute path inside it; a trailing `()` (`module:create_app()`) marks a factory.
//! Common slips get a tailored fix: a file name (`main.py:app`), a file path (`src/main:app`),
//! a missing attribute (`main`), factory arguments (`create_app(1)`).

use super::error::{Fix, Invalid};

/// A parsed spec: module, attribute, and whether `()` asked for a factory call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub module: String,
    pub attr: String,
    pub factory: bool,
}

/// Parses `module:attr` or `module:attr()`.
pub fn parse(spec: &str) -> Result<Parsed, Invalid> {
    let Some((module, attr)) = spec.split_once(':') else {
        return Err(no_colon(spec));
    };
    check_module(spec, module)?;
    let (attr, factory) = match attr.strip_suffix("()") {
        Some(name) => (name, true),
        None => (attr, false),
    };
    check_attr(spec, attr)?;
    Ok(Parsed {
        module: module.to_string(),
        attr: attr.to_string(),
        factory,
    })
}

fn no_colon(spec: &str) -> Invalid {
    let problem = format!("must be `module:attribute`, got {spec:?} (no `:`)");
    let module = spec.strip_suffix(".py").unwrap_or(spec).replace('/', ".");
    let module = if is_dotted_path(&module) {
        module
    } else {
        "myproject.asgi".into()
    };
    Invalid::new(problem, Fix::Examples(vec![format!("\"{module}:app\"")]))
}

fn check_module(spec: &str, module: &str) -> Result<(), Invalid> {
    if let Some(stem) = module.strip_suffix(".py") {
        let problem = format!("{spec:?} names a file; it needs the module name");
        let fixed = format!("\"{}:{}\"", stem.replace('/', "."), attr_of(spec));
        return Err(Invalid::new(problem, Fix::Examples(vec![fixed])));
    }
    if module.contains('/') {
        let problem = format!("{spec:?} has a path in the module name");
        let advice = "set the directory with `chdir` (--chdir) and use a dotted module path, \
                      e.g. `chdir = \"src\"` with `app = \"main:app\"`";
        return Err(Invalid::advice(problem, advice));
    }
    if !is_dotted_path(module) {
        let problem = format!("{spec:?}: {module:?} is not a Python module path");
        return Err(Invalid::examples(
            problem,
            &["\"myproject.asgi:application\""],
        ));
    }
    Ok(())
}

fn check_attr(spec: &str, attr: &str) -> Result<(), Invalid> {
    if attr.contains('(') {
        let problem = format!("{spec:?} passes arguments to the factory, which is not supported");
        let advice = "write `module:factory()` or use --factory, and read settings from the \
                      environment (`env`) inside the factory";
        return Err(Invalid::advice(problem, advice));
    }
    if !is_dotted_path(attr) {
        let problem = format!("{spec:?}: {attr:?} is not a Python attribute name");
        return Err(Invalid::examples(
            problem,
            &["\"myproject.asgi:application\""],
        ));
    }
    Ok(())
}

/// The part after the first `:`, for fixes.
fn attr_of(spec: &str) -> &str {
    spec.split_once(':').map_or("app", |(_, attr)| attr)
}

/// `a.b.c` where every part is a Python identifier.
fn is_dotted_path(path: &str) -> bool {
    path.split('.').all(is_identifier)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c == '_' || c.is_alphabetic());
    first_ok && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> (String, String, bool) {
        let parsed = parse(spec).expect(spec);
        (parsed.module, parsed.attr, parsed.factory)
    }

    fn examples(spec: &str) -> Vec<String> {
        match parse(spec).expect_err(spec).fix {
            Fix::Examples(examples) => examples,
            Fix::Advice(advice) => vec![advice],
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ok("main:app"), ("main".into(), "app".into(), false));
        assert_eq!(
            ok("my_project.asgi:application"),
            ("my_project.asgi".into(), "application".into(), false)
        );
        assert_eq!(
            ok("pkg.mod:api.app"),
            ("pkg.mod".into(), "api.app".into(), false)
        );
        assert_eq!(
            ok("pkg:create_app()"),
            ("pkg".into(), "create_app".into(), true)
        );
        assert_eq!(ok("_m:_a1"), ("_m".into(), "_a1".into(), false));
        assert_eq!(ok("café:app"), ("café".into(), "app".into(), false));
    }

    #[test]
    fn no_colon_suggests_module_colon_app() {
        let invalid = parse("myproject.asgi").unwrap_err();
        assert!(invalid.problem.contains("module:attribute"));
        assert_eq!(examples("myproject.asgi"), ["\"myproject.asgi:app\""]);
        assert_eq!(examples("main.py"), ["\"main:app\""]);
        assert_eq!(examples("not a module"), ["\"myproject.asgi:app\""]);
    }

    #[test]
    fn file_names_and_paths_are_explained() {
        assert_eq!(examples("main.py:app"), ["\"main:app\""]);
        assert!(parse("src/main:app")
            .unwrap_err()
            .problem
            .contains("path in the module"));
    }

    #[test]
    fn bad_identifiers_are_rejected() {
        for bad in [
            ":app",
            "main:",
            "main:app:x",
            "my module:app",
            "main:my app",
            "1main:app",
            "main..x:app",
            ".main:app",
            "main:app()()",
            "main:()",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn factory_arguments_are_not_supported() {
        let invalid = parse("main:create_app(debug=True)").unwrap_err();
        assert!(invalid.problem.contains("arguments"));
    }
}
