//! What this build is: `pbx version [--json]`. The git commit comes from the
//! build script; the dependencies, each with its version and source, from the
//! workspace's `Cargo.lock`, compiled in.

use serde::Serialize;

/// The lock file the binary was built with.
const LOCK: &str = include_str!("../../../Cargo.lock");

/// One crate of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub name: String,
    pub version: String,
    /// `registry+…`, `git+…`, or `None` for the workspace's own crates.
    pub source: Option<String>,
}

/// The build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    pub version: String,
    pub commit: String,
    pub dependencies: Vec<Dependency>,
}

impl Build {
    pub fn current() -> Build {
        Build {
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("PBX_GIT_COMMIT").into(),
            dependencies: locked(LOCK),
        }
    }
}

/// The `[[package]]` entries of a lock file, read line by line (its format is
/// flat: `name`, `version` and `source` keys with quoted values).
fn locked(lock: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    let mut current: Option<Dependency> = None;
    let value = |line: &str, key: &str| {
        line.strip_prefix(key)
            .and_then(|rest| rest.trim().strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    for line in lock.lines() {
        if line.trim() == "[[package]]" {
            out.extend(current.take());
            current = Some(Dependency {
                name: String::new(),
                version: String::new(),
                source: None,
            });
        } else if let Some(dep) = current.as_mut() {
            if let Some(v) = value(line, "name ") {
                dep.name = v;
            } else if let Some(v) = value(line, "version ") {
                dep.version = v;
            } else if let Some(v) = value(line, "source ") {
                dep.source = Some(v);
            }
        }
    }
    out.extend(current);
    out.retain(|d| !d.name.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_lists_its_locked_crates_and_commit() {
        let build = Build::current();
        let find = |name: &str| build.dependencies.iter().find(|d| d.name == name);
        let wasmtime = find("wasmtime").expect("wasmtime is a dependency");
        assert!(
            wasmtime
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+"))
        );
        assert!(!wasmtime.version.is_empty());
        let own = find("pbx").expect("the pbx crate itself");
        assert_eq!(
            (own.version.as_str(), own.source.as_deref()),
            (build.version.as_str(), None)
        );
        assert!(
            build.commit == "unknown" || build.commit.len() == 40,
            "{}",
            build.commit
        );
    }

    #[test]
    fn lock_entries_parse() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.2.3\"\nsource = \"registry+https://x\"\ndependencies = [\n \"b\",\n]\n\n[[package]]\nname = \"b\"\nversion = \"0.1.0\"\n";
        assert_eq!(
            locked(lock),
            vec![
                Dependency {
                    name: "a".into(),
                    version: "1.2.3".into(),
                    source: Some("registry+https://x".into())
                },
                Dependency {
                    name: "b".into(),
                    version: "0.1.0".into(),
                    source: None
                },
            ]
        );
    }
}
