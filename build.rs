//! Sets `INTERIM_VERSION`: the crate version, plus the git commit when
//! built from a checkout of this repository (`0.1.0 (abc1234)`), and
//! `INTERIM_COMMIT` (the commit alone, for `interim_build_info`). Without
//! git, or outside a checkout, just the version and an empty commit,
//! silently.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).filter(|_| own_checkout());
    match commit {
        Some(commit) => {
            println!("cargo:rustc-env=INTERIM_VERSION={version} ({commit})");
            println!("cargo:rustc-env=INTERIM_COMMIT={commit}");
            watch_head();
        }
        None => {
            println!("cargo:rustc-env=INTERIM_VERSION={version}");
            println!("cargo:rustc-env=INTERIM_COMMIT=");
        }
    }
}

/// `git ARGS` in the crate's folder, its trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The crate is the top of the checkout, not a tarball unpacked inside
/// some other repository (whose commit would be a lie).
fn own_checkout() -> bool {
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        return false;
    };
    let canonical = |p: &Path| p.canonicalize().ok();
    canonical(Path::new(&top)) == canonical(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it
/// names (a commit); in a worktree both live outside `.git/`.
fn watch_head() {
    let mut files = vec!["HEAD".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(branch);
        files.push("packed-refs".to_owned());
    }
    for file in files {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &file])
            .filter(|p| Path::new(p).exists())
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
