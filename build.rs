//! Embeds the Python worker runtime (`python/`: the `herdsman` package and its launcher) into the
//! master: writes `$OUT_DIR/runtime_files.rs`, a list of `(relative path, include_str!(file))`
//! for every `.py` file under `python/` (tests and caches left out), sorted so the build is
//! reproducible. `src/worker/runtime.rs` writes them out at start.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() -> io::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let python = root.join("python");
    let mut files = Vec::new();
    collect(&python, &mut files)?;
    files.sort();
    let mut out = String::from("&[\n");
    for file in &files {
        let relative = file.strip_prefix(&python).expect("collected below python/");
        out.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            relative.to_str().expect("runtime paths are UTF-8"),
            file.to_str().expect("runtime paths are UTF-8"),
        ));
    }
    out.push(']');
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("runtime_files.rs");
    fs::write(dest, out)?;
    println!("cargo:rerun-if-changed=python");
    Ok(())
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "__pycache__" && name != "tests" {
                println!("cargo:rerun-if-changed={}", path.display());
                collect(&path, files)?;
            }
        } else if name.ends_with(".py") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    Ok(())
}
