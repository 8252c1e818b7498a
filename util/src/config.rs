//! Config files: one TOML file per process, units in the key names (`_ms`, `_bytes`), unknown
//! keys refused (every config type denies them), relative paths taken from the file's own
//! directory (so a config means the same wherever it is run from), and a check of what the types
//! cannot say. `tradewind <part> --config FILE --check-config` runs `load` and stops.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file's type: how its relative paths resolve, and what it checks.
pub trait Config: DeserializeOwned {
    /// Makes the paths in it relative to `base`, the file's directory (`resolve`).
    fn resolve(&mut self, _base: &Path) {}
    /// What the types cannot say (bounds, names, one key against another).
    fn check(&self) -> Result<(), Invalid>;
}

/// Why a value of a config is refused: what is wrong, naming its key (`limits.body_max_bytes
/// must be at least 1024`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// `key: what` for the value at `key`.
    pub fn at(key: &str, what: impl std::fmt::Display) -> Self {
        Invalid(format!("{key}: {what}"))
    }
}

/// Why a config file was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    // Said in the message, and so not a `source` too: a chain printed whole would say it twice.
    #[error("{path}: {why}")]
    Invalid { path: String, why: Invalid },
}

/// Reads, parses, resolves and checks the config file at `path`.
pub fn load<C: Config>(path: &Path) -> Result<C, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, path.parent().unwrap_or(Path::new(".")), &shown)
}

/// `load` for `text`, with relative paths taken from `base`; `shown` names it in errors.
pub fn parse<C: Config>(text: &str, base: &Path, shown: &str) -> Result<C, ConfigError> {
    let mut c: C = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: shown.to_owned(),
        message: e.to_string(),
    })?;
    c.resolve(base);
    c.check().map_err(|why| ConfigError::Invalid {
        path: shown.to_owned(),
        why,
    })?;
    Ok(c)
}

/// Makes `path` relative to `base` when it is relative.
pub fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// Writes `config` as the TOML `load` reads: how a tool that deploys a mesh (the demo) writes
/// each part's file, from the same types the part reads.
pub fn to_toml<C: serde::Serialize>(config: &C) -> Result<String, toml::ser::Error> {
    toml::to_string(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        data: PathBuf,
        #[serde(default)]
        limit_bytes: u64,
    }

    impl Config for Sample {
        fn resolve(&mut self, base: &Path) {
            resolve(base, &mut self.data);
        }
        fn check(&self) -> Result<(), Invalid> {
            if self.limit_bytes > 100 {
                return Err(Invalid::at("limit_bytes", "at most 100"));
            }
            Ok(())
        }
    }

    #[test]
    fn loads_resolves_checks_and_says_where_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part.toml");
        std::fs::write(&p, "data = \"d/x.redb\"\nlimit_bytes = 5\n").unwrap();
        let c: Sample = load(&p).unwrap();
        assert_eq!(c.data, dir.path().join("d/x.redb"));
        let back: Sample = parse(&to_toml(&c).unwrap(), Path::new("/"), "again").unwrap();
        assert_eq!(back.data, c.data);
        for (text, why) in [
            ("data = \"d\"\ntypo = 1\n", "unknown field"),
            (
                "data = \"d\"\nlimit_bytes = 500\n",
                "limit_bytes: at most 100",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = load::<Sample>(&p).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("part.toml"), "{err}");
        }
        assert!(matches!(
            load::<Sample>(&dir.path().join("none.toml")),
            Err(ConfigError::Read { .. })
        ));
    }
}
