//! Writes the CRDs of both API groups into `config/crd/` (or checks that they are current).
//!
//! ```text
//! crdgen [--check] [DIR]      DIR defaults to config/crd
//! ```

use std::{path::PathBuf, process::ExitCode};

use siskin_api::{ApiGroup, crd};

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("config/crd");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]   (DIR defaults to config/crd)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut stale = Vec::new();
    for group in ApiGroup::ALL {
        let text = match crd::all(group).map(|c| crd::to_yaml(&c)) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return fail(&format!("cannot render the {group} CRDs: {e}")),
            Err(e) => return fail(&format!("cannot build the {group} CRDs: {e}")),
        };
        let path = dir.join(format!("{}.yaml", group.name()));
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text))
        {
            return fail(&format!("cannot write {}: {e}", path.display()));
        } else {
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        fail(&format!(
            "stale CRDs: {}; run `cargo run -p siskin-api --bin crdgen` and commit the result",
            stale.join(", ")
        ))
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("crdgen: {msg}");
    ExitCode::FAILURE
}
