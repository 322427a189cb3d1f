//! `.openkb/config.yaml` and `~/.config/openkb/global.yaml`.
//!
//! Both are YAML mappings shared with the Python tool, so unknown keys are kept and written
//! back, keys are written sorted (as `yaml.safe_dump(sort_keys=True)` does), and every write
//! is atomic. A malformed file is reported with its line and column and never overwritten.
//! Read-modify-writes of `global.yaml` happen under the global flock (`global.lock`), so two
//! `openkb init` or `use` processes cannot lose each other's update.

use std::path::{Path, PathBuf};

use yaml_serde::{Mapping, Value};

use crate::error::{Error, IoContext, Result};
use crate::fsx;
use crate::lock::{self, LockMode};

pub const DEFAULT_MODEL: &str = "gpt-5.4";
pub const DEFAULT_LANGUAGE: &str = "en";
pub const DEFAULT_PAGEINDEX_THRESHOLD: u64 = 20;
/// Largest accepted `compile_timeout` (a year, in seconds).
const MAX_COMPILE_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A YAML mapping read from a file, kept whole so unknown keys survive a rewrite.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct YamlFile {
    pub values: Mapping,
}

impl YamlFile {
    /// Read `path`; a missing file is an empty mapping.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|e| Error::ConfigShape {
                path: path.to_path_buf(),
                message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: Value = yaml_serde::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            Error::YamlSyntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        match value {
            Value::Mapping(values) => Ok(Self { values }),
            Value::Null => Ok(Self::default()),
            other => Err(Error::ConfigShape {
                path: path.to_path_buf(),
                message: format!(
                    "expected a mapping of keys to values at the top level, found {}",
                    yaml_kind(&other)
                ),
            }),
        }
    }

    /// The YAML text as the Python tool writes it: keys sorted, block style.
    pub fn to_yaml(&self) -> Result<String> {
        let mut sorted: Vec<(&Value, &Value)> = self.values.iter().collect();
        sorted.sort_by_key(|(k, _)| sort_key(k));
        let mut out = Mapping::new();
        for (k, v) in sorted {
            out.insert(k.clone(), v.clone());
        }
        yaml_serde::to_string(&Value::Mapping(out))
            .map_err(|e| Error::Invalid(format!("cannot serialize YAML: {e}")))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        fsx::atomic_write(path, self.to_yaml()?.as_bytes())
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Value::as_str)
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.values
            .insert(Value::String(key.to_owned()), value.into());
    }
}

fn sort_key(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other).unwrap_or_default(),
    }
}

fn yaml_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A KB's `.openkb/config.yaml`, with the Python tool's defaults filled in for reading.
#[derive(Clone, Debug)]
pub struct KbConfig {
    pub file: YamlFile,
}

impl KbConfig {
    /// The three keys `init` writes, as the Python tool writes them.
    pub fn initial(model: &str, language: &str) -> Self {
        let mut file = YamlFile::default();
        file.set("language", language);
        file.set("model", model);
        file.set("pageindex_threshold", DEFAULT_PAGEINDEX_THRESHOLD);
        Self { file }
    }

    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self {
            file: YamlFile::load(path)?,
        })
    }

    pub fn model(&self) -> &str {
        self.file.get_str("model").unwrap_or(DEFAULT_MODEL)
    }

    pub fn language(&self) -> &str {
        self.file.get_str("language").unwrap_or(DEFAULT_LANGUAGE)
    }

    pub fn pageindex_threshold(&self) -> u64 {
        self.file
            .values
            .get("pageindex_threshold")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_PAGEINDEX_THRESHOLD)
    }

    /// `compile_timeout`: how long one run of `compile_command` may take, in seconds (a
    /// positive number, integer or not); absent or null means no limit. `path` is the file the
    /// config was read from, for the error a wrong value gets.
    pub fn compile_timeout(&self, path: &Path) -> Result<Option<std::time::Duration>> {
        let value = match self.file.values.get("compile_timeout") {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        let wrong = |found: String| Error::ConfigShape {
            path: path.to_path_buf(),
            message: format!(
                "compile_timeout must be a positive number of seconds (e.g. 600 or 2.5), found \
                 {found} (leave the key out for no limit)"
            ),
        };
        let seconds = value
            .as_f64()
            .ok_or_else(|| wrong(yaml_kind(value).to_owned()))?;
        // Bounded so that the Duration cannot overflow; a year is no limit in practice.
        if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_COMPILE_TIMEOUT_SECS {
            return Err(wrong(format!("{seconds}")));
        }
        Ok(Some(std::time::Duration::from_secs_f64(seconds)))
    }

    /// The shell command that compiles one document (see `openkb compile`), if configured.
    pub fn compile_command(&self) -> Option<&str> {
        self.file
            .get_str("compile_command")
            .filter(|c| !c.trim().is_empty())
    }
}

/// Validate a model or language value given to `init`, with the Python tool's limits.
pub fn validate_init_value(what: &str, value: &str, max_len: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::Invalid(format!("{what} must not be empty")));
    }
    if value.chars().count() > max_len {
        return Err(Error::Invalid(format!(
            "{what} is longer than {max_len} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{what} must not contain control characters (newlines, tabs)"
        )));
    }
    Ok(())
}

/// Where the user-wide files live: `$HOME/.config/openkb/`.
pub fn global_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".config").join("openkb")),
        _ => Err(Error::Invalid(
            "HOME is not set, so ~/.config/openkb/global.yaml cannot be found; set HOME".into(),
        )),
    }
}

/// `~/.config/openkb/global.yaml`: the known KBs and the default one.
#[derive(Clone, Debug, Default)]
pub struct GlobalConfig {
    pub file: YamlFile,
}

impl GlobalConfig {
    pub fn path() -> Result<PathBuf> {
        Ok(global_dir()?.join("global.yaml"))
    }

    pub fn lock_path() -> Result<PathBuf> {
        Ok(global_dir()?.join("global.lock"))
    }

    /// Read without locking: `global.yaml` is only ever replaced atomically, so a reader sees
    /// a whole version.
    pub fn load() -> Result<Self> {
        Ok(Self {
            file: YamlFile::load(&Self::path()?)?,
        })
    }

    pub fn default_kb(&self) -> Option<PathBuf> {
        self.file
            .get_str("default_kb")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }

    pub fn known_kbs(&self) -> Vec<PathBuf> {
        match self.file.values.get("known_kbs") {
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(PathBuf::from)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Add `kb` (absolute) to `known_kbs` once and make it `default_kb`, as `init` and `use`
    /// do.
    pub fn register(&mut self, kb: &Path) {
        let kb_text = kb.to_string_lossy().into_owned();
        let mut known: Vec<Value> = match self.file.values.get("known_kbs") {
            Some(Value::Sequence(items)) => items.clone(),
            _ => Vec::new(),
        };
        if !known.iter().any(|v| v.as_str() == Some(kb_text.as_str())) {
            known.push(Value::String(kb_text.clone()));
        }
        self.file.set("known_kbs", Value::Sequence(known));
        self.file.set("default_kb", kb_text);
    }

    /// Read-modify-write under `global.lock`; writes only when `change` altered something.
    pub fn update(change: impl FnOnce(&mut GlobalConfig) -> Result<()>) -> Result<GlobalConfig> {
        let path = Self::path()?;
        let lock_path = Self::lock_path()?;
        let _guard = lock::acquire(&lock_path, LockMode::Exclusive, &path)?;
        sweep_old_temp_files(&path);
        let mut config = Self {
            file: YamlFile::load(&path)?,
        };
        let before = config.file.clone();
        change(&mut config)?;
        if config.file != before {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_path("cannot create folder", dir)?;
            }
            config.file.save(&path)?;
        }
        Ok(config)
    }
}

/// Remove the temp files of `global.yaml` rewrites that were killed before their rename
/// (`.global.yaml.<random>.tmp`, older than doctor's 5 minutes, so never a live writer's):
/// doctor sweeps temp files inside KBs only, and nothing else would ever remove these. Best
/// effort: a file that cannot be removed is left for the next time.
fn sweep_old_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !(file_name.starts_with(&prefix) && fsx::is_temp_name(&file_name)) {
            continue;
        }
        if fsx::modified_at_least(entry.metadata(), now, fsx::ABANDONED_TEMP_AGE) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_sorted_and_unknown_keys_kept() {
        let file = YamlFile::parse(
            Path::new("config.yaml"),
            "timeout: 300\nmodel: m\nzeta:\n  nested: [1, 2]\nlanguage: en\n",
        )
        .unwrap();
        let text = file.to_yaml().unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(keys, ["language", "model", "timeout", "zeta"]);
        let back = YamlFile::parse(Path::new("config.yaml"), &text).unwrap();
        assert_eq!(back, file);
    }

    #[test]
    fn malformed_yaml_names_line_and_column() {
        let err = YamlFile::parse(Path::new("/kb/.openkb/config.yaml"), "model: a\n  bad: [\n")
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/kb/.openkb/config.yaml"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn a_list_at_top_level_is_refused() {
        let err = YamlFile::parse(Path::new("g.yaml"), "- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("found a list"), "{err}");
    }

    #[test]
    fn initial_config_matches_the_python_tool() {
        let text = KbConfig::initial("gpt-5.4", "en").file.to_yaml().unwrap();
        assert_eq!(
            text,
            "language: en\nmodel: gpt-5.4\npageindex_threshold: 20\n"
        );
    }

    #[test]
    fn compile_timeout_is_typed_and_bounded() {
        let path = Path::new("/kb/.openkb/config.yaml");
        let timeout = |yaml: &str| {
            KbConfig {
                file: YamlFile::parse(path, yaml).unwrap(),
            }
            .compile_timeout(path)
        };
        assert_eq!(timeout("model: m\n").unwrap(), None);
        assert_eq!(timeout("compile_timeout: null\n").unwrap(), None);
        assert_eq!(
            timeout("compile_timeout: 90\n").unwrap(),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            timeout("compile_timeout: 0.5\n").unwrap(),
            Some(std::time::Duration::from_millis(500))
        );
        for bad in ["'90'", "0", "-3", ".nan", ".inf", "[1]", "true", "1e300"] {
            let err = timeout(&format!("compile_timeout: {bad}\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("config.yaml"), "{bad}: {text}");
            assert!(text.contains("compile_timeout"), "{bad}: {text}");
        }
    }

    #[test]
    fn register_does_not_duplicate() {
        let mut g = GlobalConfig::default();
        g.register(Path::new("/a"));
        g.register(Path::new("/b"));
        g.register(Path::new("/a"));
        assert_eq!(g.known_kbs(), [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(g.default_kb(), Some(PathBuf::from("/a")));
    }
}
