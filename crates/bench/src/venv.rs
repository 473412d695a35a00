//! Which Python interpreter the run uses, and getting one: when the interpreter lacks numpy
//! or the peers (mpire, pebble, joblib), the bench makes a virtual environment under the
//! target folder and installs them with pip, saying what it does; a later run reuses it.
//! `--quick` installs nothing; without network, pip fails, the bench says so and runs
//! without what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Res;

/// What the Python side needs: numpy, then the peers.
pub(crate) const PACKAGES: [&str; 4] = ["numpy", "mpire", "pebble", "joblib"];

/// The venv's folder name under the target folder.
const VENV: &str = "multiproc-bench-venv";

/// What an interpreter has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// `python version`, e.g. `3.11.7`.
    pub python: String,
    /// The packages of [`PACKAGES`] it lacks.
    pub missing: Vec<String>,
}

impl Found {
    fn has_numpy(&self) -> bool {
        !self.missing.iter().any(|m| m == "numpy")
    }
}

/// What to do, decided from what the interpreters have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Run this interpreter (the peers it lacks are n/a rows).
    Use(PathBuf),
    /// Make (or complete) the venv at this folder from this interpreter, then run it.
    Install {
        /// The interpreter that makes the venv.
        base: PathBuf,
        /// The venv's folder.
        venv: PathBuf,
        /// What to install.
        packages: Vec<String>,
    },
    /// No Python column, and why.
    Skip(String),
}

/// The choice: the interpreter if it has everything; an interpreter named with `--python`
/// if it has numpy (its missing peers are n/a rows), never replaced; else the venv if it has
/// everything; else, unless installing is ruled out (`--quick`, or no interpreter to make
/// it from), install into the venv what it lacks; else whichever has numpy.
pub(crate) fn plan(
    base: &Path,
    named: bool,
    quick: bool,
    venv: &Path,
    found_base: &Res<Found>,
    found_venv: Option<&Res<Found>>,
) -> Plan {
    let complete = |f: &Res<Found>| f.as_ref().is_ok_and(|f| f.missing.is_empty());
    let with_numpy = |f: &Res<Found>| f.as_ref().is_ok_and(Found::has_numpy);
    let no_numpy = |hint: &str| {
        Plan::Skip(match found_base {
            Err(e) => format!("{e} ({hint})"),
            Ok(_) => format!("{} has no numpy ({hint})", base.display()),
        })
    };
    if complete(found_base) {
        return Plan::Use(base.to_path_buf());
    }
    if named {
        return if with_numpy(found_base) {
            Plan::Use(base.to_path_buf())
        } else {
            no_numpy("install numpy into the interpreter given with --python")
        };
    }
    if found_venv.is_some_and(complete) {
        return Plan::Use(venv_python(venv));
    }
    if quick || found_base.is_err() {
        return if found_venv.is_some_and(with_numpy) {
            Plan::Use(venv_python(venv))
        } else if with_numpy(found_base) {
            Plan::Use(base.to_path_buf())
        } else if quick {
            no_numpy("--quick installs nothing; without it, the bench makes a venv with numpy")
        } else {
            no_numpy("install Python 3 for the Python column")
        };
    }
    let missing = match found_venv {
        Some(Ok(f)) => f.missing.clone(),
        _ => PACKAGES.iter().map(|p| p.to_string()).collect(),
    };
    Plan::Install {
        base: base.to_path_buf(),
        venv: venv.to_path_buf(),
        packages: missing,
    }
}

/// The venv's folder: `multiproc-bench-venv` in the target folder this binary was built in
/// (`target/release/multiproc-bench` → `target/`), or in `target/` of the current folder.
pub(crate) fn default_venv() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .filter(|t| t.join("CACHEDIR.TAG").exists() || t.ends_with("target"))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join(VENV)
}

/// The venv's interpreter.
pub(crate) fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// What `python` has, or why it cannot run.
pub(crate) fn probe(python: &Path) -> Res<Found> {
    let code = format!(
        "import sys, importlib.util as u\nprint(sys.version.split()[0])\n\
         print(' '.join(p for p in {PACKAGES:?} if u.find_spec(p) is None))"
    );
    let out = Command::new(python)
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} not found ({e})", python.display()))?;
    if !out.status.success() {
        return Err(format!("{} does not run Python 3", python.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    Ok(Found {
        python: lines.next().unwrap_or("?").trim().to_string(),
        missing: lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect(),
    })
}

/// Makes the venv (if it does not exist) and installs `packages` into it, saying so on
/// stderr; an error says what failed (no network, most likely).
pub(crate) fn install(base: &Path, venv: &Path, packages: &[String]) -> Res<()> {
    let say = |msg: String| eprintln!("multiproc-bench: {msg}");
    if !venv_python(venv).exists() {
        say(format!(
            "creating a Python virtual environment for the Python column: {} -m venv {}",
            base.display(),
            venv.display()
        ));
        run(Command::new(base).arg("-m").arg("venv").arg(venv))
            .map_err(|e| format!("creating the venv {}: {e}", venv.display()))?;
    }
    say(format!(
        "installing {} into it with pip (once; later runs reuse {})",
        packages.join(" "),
        venv.display()
    ));
    run(Command::new(venv_python(venv))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(["--retries", "1", "--timeout", "15"])
        .args(packages))
    .map_err(|e| {
        format!(
            "pip could not install {} (no network? {e})",
            packages.join(" ")
        )
    })
}

/// Runs `cmd` with its output on stderr; the tail of it in the error.
fn run(cmd: &mut Command) -> Res<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(1).collect();
    Err(format!(
        "{}: {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

/// Decides and acts: the interpreter to run (and its description), or why there is none.
pub(crate) fn choose(python: Option<&str>, quick: bool) -> Res<(PathBuf, Found)> {
    let base = PathBuf::from(python.unwrap_or("python3"));
    let venv = default_venv();
    let found_base = probe(&base);
    let found_venv = venv_python(&venv)
        .exists()
        .then(|| probe(&venv_python(&venv)));
    let chosen = match plan(
        &base,
        python.is_some(),
        quick,
        &venv,
        &found_base,
        found_venv.as_ref(),
    ) {
        Plan::Use(p) => p,
        Plan::Skip(why) => return Err(why),
        Plan::Install {
            base,
            venv,
            packages,
        } => match install(&base, &venv, &packages) {
            Ok(()) => venv_python(&venv),
            Err(e) => {
                eprintln!("multiproc-bench: {e}");
                // Without network: whatever has numpy, peers n/a; else no Python column.
                let found_venv = venv_python(&venv)
                    .exists()
                    .then(|| probe(&venv_python(&venv)));
                match plan(&base, false, true, &venv, &found_base, found_venv.as_ref()) {
                    Plan::Use(p) => p,
                    _ => return Err(format!("{e}: running without the Python column")),
                }
            }
        },
    };
    let found = probe(&chosen)?;
    Ok((chosen, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(missing: &[&str]) -> Res<Found> {
        Ok(Found {
            python: "3.11".into(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
        })
    }

    fn plan_for(named: bool, quick: bool, base: Res<Found>, venv: Option<Res<Found>>) -> Plan {
        plan(
            Path::new("python3"),
            named,
            quick,
            Path::new("/t/venv"),
            &base,
            venv.as_ref(),
        )
    }

    #[test]
    fn an_interpreter_with_everything_is_used_as_it_is() {
        assert_eq!(
            plan_for(false, false, found(&[]), None),
            Plan::Use("python3".into())
        );
    }

    #[test]
    fn a_complete_venv_is_reused() {
        assert_eq!(
            plan_for(false, false, found(&["numpy", "mpire"]), Some(found(&[]))),
            Plan::Use("/t/venv/bin/python".into())
        );
    }

    #[test]
    fn what_is_missing_is_installed_into_the_venv() {
        let all: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            plan_for(
                false,
                false,
                found(&["numpy", "mpire", "pebble", "joblib"]),
                None
            ),
            Plan::Install {
                base: "python3".into(),
                venv: "/t/venv".into(),
                packages: all,
            }
        );
        // A venv from an earlier, interrupted install: only what it lacks.
        assert_eq!(
            plan_for(false, false, found(&["numpy"]), Some(found(&["joblib"]))),
            Plan::Install {
                base: "python3".into(),
                venv: "/t/venv".into(),
                packages: vec!["joblib".into()],
            }
        );
    }

    #[test]
    fn quick_installs_nothing() {
        assert!(matches!(
            plan_for(false, true, found(&["numpy"]), None),
            Plan::Skip(why) if why.contains("--quick installs nothing")
        ));
        // With numpy but without peers, quick runs what there is.
        assert_eq!(
            plan_for(false, true, found(&["mpire"]), None),
            Plan::Use("python3".into())
        );
    }

    #[test]
    fn a_named_interpreter_is_never_replaced_by_a_venv() {
        assert_eq!(
            plan_for(true, false, found(&["pebble"]), Some(found(&[]))),
            Plan::Use("python3".into()),
            "the user's interpreter has numpy: its missing peers are n/a rows"
        );
        assert!(matches!(
            plan_for(true, false, found(&["numpy"]), None),
            Plan::Skip(_)
        ));
    }

    #[test]
    fn without_python_there_is_nothing_to_make_a_venv_from() {
        assert!(matches!(
            plan_for(false, false, Err("python3 not found".into()), None),
            Plan::Skip(why) if why.starts_with("python3 not found")
        ));
    }
}
