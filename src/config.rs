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
use crate::settings::Settings;

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
        let text = match fsx::read_if_exists(path)? {
            Some(bytes) => String::from_utf8(bytes).map_err(|e| Error::ConfigShape {
                path: path.to_path_buf(),
                message: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            })?,
            None => return Ok(Self::default()),
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
///
/// A key of the wrong type (`compile_command: 5`, `model: [a]`) is an error naming the file,
/// the key and the type expected, never quietly read as "not set": a hook that silently does
/// not run is worse than a command that refuses.
#[derive(Clone, Debug)]
pub struct KbConfig {
    pub file: YamlFile,
    /// Where it was read from (for messages); empty for a config not read from a file.
    pub path: PathBuf,
}

impl KbConfig {
    /// The three keys `init` writes, as the Python tool writes them.
    pub fn initial(model: &str, language: &str) -> Self {
        let mut file = YamlFile::default();
        file.set("language", language);
        file.set("model", model);
        file.set("pageindex_threshold", DEFAULT_PAGEINDEX_THRESHOLD);
        Self {
            file,
            path: PathBuf::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self {
            file: YamlFile::load(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn model(&self) -> Result<&str> {
        Ok(self.string("model")?.unwrap_or(DEFAULT_MODEL))
    }

    pub fn language(&self) -> Result<&str> {
        Ok(self.string("language")?.unwrap_or(DEFAULT_LANGUAGE))
    }

    pub fn pageindex_threshold(&self) -> Result<u64> {
        match self.file.values.get("pageindex_threshold") {
            None | Some(Value::Null) => Ok(DEFAULT_PAGEINDEX_THRESHOLD),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.wrong_type("pageindex_threshold", "a whole number", v)),
        }
    }

    /// `compile_timeout`: how long one run of `compile_command` may take, in seconds (a
    /// positive number, integer or not); absent or null means no limit.
    pub fn compile_timeout(&self) -> Result<Option<std::time::Duration>> {
        const EXPECTED: &str =
            "a positive number of seconds (e.g. 600 or 2.5; leave the key out for no limit)";
        let value = match self.file.values.get("compile_timeout") {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        let seconds = value
            .as_f64()
            .ok_or_else(|| self.wrong_type("compile_timeout", EXPECTED, value))?;
        // Bounded so that the Duration cannot overflow; a year is no limit in practice.
        if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_COMPILE_TIMEOUT_SECS {
            return Err(Error::ConfigShape {
                path: self.path.clone(),
                message: format!("`compile_timeout` must be {EXPECTED}, found {seconds}"),
            });
        }
        Ok(Some(std::time::Duration::from_secs_f64(seconds)))
    }

    /// The shell command that compiles one document (see `openkb compile`), if configured.
    pub fn compile_command(&self) -> Result<Option<&str>> {
        Ok(self
            .string("compile_command")?
            .filter(|c| !c.trim().is_empty()))
    }

    /// The string value of `key`; absent or `null` is `None`, any other type an error.
    pub fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.file.values.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> Error {
        Error::ConfigShape {
            path: self.path.clone(),
            message: format!(
                "`{key}` must be {expected}, found {}{}",
                yaml_kind(found),
                if key == "compile_command" {
                    " (quote a command that YAML would read otherwise, e.g. \"make wiki\")"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The `state:` section of a KB's config: where its registry and log live.
///
/// ```yaml
/// state:
///   backend: postgres      # absent or `sqlite`: the local .openkb/state.db
///   kb_id: 5b0c2c1e-...    # the KB's id in the shared database (a UUID v4)
/// ```
///
/// The connection string is deliberately not here: the KB folder is shared by the whole team
/// (and often synced), so it comes from each user's environment (`OPENKB_STATE_URL`, libpq's
/// variables, `~/.pgpass`). A password or connection string under `state:` is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateConfig {
    /// The local `.openkb/state.db` (the default).
    Sqlite,
    /// Team mode: the state in PostgreSQL, in the schema of this KB id.
    Postgres { kb_id: KbId },
}

impl StateConfig {
    pub fn is_team(&self) -> bool {
        matches!(self, StateConfig::Postgres { .. })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            StateConfig::Sqlite => "sqlite",
            StateConfig::Postgres { .. } => "postgres",
        }
    }
}

/// A team KB's id: a UUID, kept in its canonical lowercase hyphenated form. It names the KB's
/// schema in the shared database and keys its advisory lock, so two KBs sharing a database
/// never see each other's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KbId(String);

impl KbId {
    /// A new random (version 4) id, for `init --backend postgres` and `migrate --to-postgres`.
    pub fn new_random() -> Result<KbId> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .with_path("cannot read random bytes from", "/dev/urandom")?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(KbId(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )))
    }

    /// Parse a UUID written with hyphens (8-4-4-4-12 hex digits, any case).
    pub fn parse(text: &str) -> Option<KbId> {
        let groups: Vec<&str> = text.split('-').collect();
        let lengths_ok = groups.len() == 5
            && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
        lengths_ok.then(|| KbId(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits of the id, without hyphens.
    pub fn hex(&self) -> String {
        self.0.replace('-', "")
    }

    /// The KB's schema in the shared database: `openkb_<32 hex digits>` (a plain identifier:
    /// lowercase, no quoting needed, 39 bytes, under PostgreSQL's 63).
    pub fn schema_name(&self) -> String {
        format!("openkb_{}", self.hex())
    }
}

impl std::fmt::Display for KbId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keys under `state:` that would put a secret or a connection string into the shared folder.
const SECRET_KEYS: &[&str] = &[
    "url",
    "dsn",
    "password",
    "passwd",
    "pass",
    "passfile",
    "connection",
    "connection_string",
    "conninfo",
];

impl KbConfig {
    /// The `state:` section (see [`StateConfig`]). Absent means the local `state.db`.
    /// Refused, naming the file: an unknown backend, team mode without a valid `kb_id`, and
    /// any password or connection string under `state:`.
    pub fn state(&self) -> Result<StateConfig> {
        let section = match self.file.values.get("state") {
            None | Some(Value::Null) => return Ok(StateConfig::Sqlite),
            Some(Value::Mapping(section)) => section,
            Some(other) => {
                return Err(self.wrong_type("state", "a mapping (backend, kb_id)", other));
            }
        };
        self.refuse_secrets(section)?;
        let backend = match section.get("backend") {
            None | Some(Value::Null) => "sqlite",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(self.wrong_type("state.backend", "a string", other)),
        };
        match backend {
            "sqlite" => Ok(StateConfig::Sqlite),
            "postgres" | "postgresql" => {
                let kb_id = match section.get("kb_id") {
                    Some(Value::String(s)) => KbId::parse(s.trim()),
                    _ => None,
                };
                let kb_id = kb_id.ok_or_else(|| Error::ConfigShape {
                    path: self.path.clone(),
                    message: "`state.backend` is postgres but `state.kb_id` is missing or not a \
                              UUID (8-4-4-4-12 hex digits): it names the KB's schema in the \
                              database; restore it from a teammate's copy of this file"
                        .into(),
                })?;
                Ok(StateConfig::Postgres { kb_id })
            }
            other => Err(Error::ConfigShape {
                path: self.path.clone(),
                message: format!(
                    "`state.backend` is {:?}; the backends are `sqlite` (the default) and \
                     `postgres`",
                    crate::names::truncate_bytes(other, 64)
                ),
            }),
        }
    }

    /// Write `state` into the `state:` section, keeping any other key there (and everywhere
    /// else). `Sqlite` drops `backend` and `kb_id`, and the section when nothing else is in it.
    pub fn set_state(&mut self, state: &StateConfig) {
        let mut section = match self.file.values.get("state") {
            Some(Value::Mapping(section)) => section.clone(),
            _ => Mapping::new(),
        };
        match state {
            StateConfig::Sqlite => {
                section.remove("backend");
                section.remove("kb_id");
            }
            StateConfig::Postgres { kb_id } => {
                section.insert("backend".into(), "postgres".into());
                section.insert("kb_id".into(), kb_id.as_str().into());
            }
        }
        if section.is_empty() {
            self.file.values.remove("state");
        } else {
            self.file.set("state", Value::Mapping(section));
        }
    }

    fn refuse_secrets(&self, section: &Mapping) -> Result<()> {
        match find_secret_in(section, "state") {
            None => Ok(()),
            Some(place) => Err(Error::ConfigShape {
                path: self.path.clone(),
                message: format!(
                    "{place}: a connection string or password must not be in the KB's config, \
                     which everyone who can read the KB folder can read; remove it and set \
                     OPENKB_STATE_URL (the connection, without the password) in each user's \
                     environment, with the password in PGPASSWORD or ~/.pgpass"
                ),
            }),
        }
    }
}

/// Where under `value` (named `at`) a secret sits: a key of [`SECRET_KEYS`] (or one containing
/// "password"), or a string that is a URL with a password or a libpq `password=` setting.
fn find_secret(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::Mapping(map) => find_secret_in(map, at),
        Value::Sequence(items) => items.iter().find_map(|v| find_secret(v, at)),
        Value::Tagged(tagged) => find_secret(&tagged.value, at),
        Value::String(s) if looks_like_secret(s) => Some(format!("`{at}`")),
        _ => None,
    }
}

fn find_secret_in(map: &Mapping, at: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| {
        let name = sort_key(key).trim().to_ascii_lowercase();
        let here = format!("{at}.{}", crate::names::truncate_bytes(&name, 64));
        if SECRET_KEYS.contains(&name.as_str()) || name.contains("password") {
            return Some(format!("`{here}`"));
        }
        find_secret(value, &here)
    })
}

/// A `scheme://user:password@host` URL, or a libpq key=value string with a `password=`.
pub(crate) fn looks_like_secret(text: &str) -> bool {
    if let Some((_, rest)) = text.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            return userinfo.contains(':');
        }
    }
    text.split_whitespace()
        .any(|word| word.to_ascii_lowercase().starts_with("password="))
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

/// Where the user-wide files live: `<home>/.config/openkb/` (`home` from `HOME`, see
/// [`crate::settings`]).
pub fn global_dir(settings: &Settings) -> Result<PathBuf> {
    match &settings.home {
        Some(home) => Ok(home.join(".config").join("openkb")),
        None => Err(Error::Invalid(
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
    pub fn path(settings: &Settings) -> Result<PathBuf> {
        Ok(global_dir(settings)?.join("global.yaml"))
    }

    pub fn lock_path(settings: &Settings) -> Result<PathBuf> {
        Ok(global_dir(settings)?.join("global.lock"))
    }

    /// Read without locking: `global.yaml` is only ever replaced atomically, so a reader sees
    /// a whole version.
    pub fn load(settings: &Settings) -> Result<Self> {
        Ok(Self {
            file: YamlFile::load(&Self::path(settings)?)?,
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

    /// Drop every spelling in `kb` from `known_kbs` (and `default_kb` when it is one of them).
    /// `None` when none of them was known; else whether it was the default.
    pub fn forget(&mut self, kb: &[&Path]) -> Option<bool> {
        let matches = |v: &Value| v.as_str().is_some_and(|s| kb.contains(&Path::new(s)));
        let mut found = false;
        if let Some(Value::Sequence(items)) = self.file.values.get_mut("known_kbs") {
            let before = items.len();
            items.retain(|v| !matches(v));
            found = items.len() != before;
        }
        let was_default = self.default_kb().is_some_and(|d| kb.contains(&d.as_path()));
        if was_default {
            self.file.values.remove("default_kb");
        }
        (found || was_default).then_some(was_default)
    }

    /// Read-modify-write under `global.lock`; writes only when `change` altered something.
    /// `settings` say where the file is and how long to wait for another process's update.
    pub fn update(
        settings: &Settings,
        change: impl FnOnce(&mut GlobalConfig) -> Result<()>,
    ) -> Result<GlobalConfig> {
        let path = Self::path(settings)?;
        let lock_path = Self::lock_path(settings)?;
        let _guard = lock::acquire_waiting(&lock_path, LockMode::Exclusive, &path, &settings.lock)?;
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
    fn wrong_types_name_file_key_and_expected_type() {
        let load = |text: &str| KbConfig {
            file: YamlFile::parse(Path::new("c.yaml"), text).unwrap(),
            path: PathBuf::from("/kb/.openkb/config.yaml"),
        };
        for text in ["compile_command: 5\n", "compile_command: [a, b]\n"] {
            let message = load(text).compile_command().unwrap_err().to_string();
            assert!(message.contains("/kb/.openkb/config.yaml"), "{message}");
            assert!(
                message.contains("`compile_command` must be a string"),
                "{message}"
            );
        }
        assert!(
            load("compile_command: null\n")
                .compile_command()
                .unwrap()
                .is_none()
        );
        assert!(load("model: {a: 1}\n").model().is_err());
        assert!(
            load("pageindex_threshold: -1\n")
                .pageindex_threshold()
                .is_err()
        );
        assert_eq!(load("").pageindex_threshold().unwrap(), 20);
        assert_eq!(
            load("compile_command: ' make '\n")
                .compile_command()
                .unwrap(),
            Some(" make ")
        );
    }

    #[test]
    fn compile_timeout_is_typed_and_bounded() {
        let path = Path::new("/kb/.openkb/config.yaml");
        let timeout = |yaml: &str| {
            KbConfig {
                file: YamlFile::parse(path, yaml).unwrap(),
                path: path.to_path_buf(),
            }
            .compile_timeout()
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
            assert!(
                text.contains("`compile_timeout` must be a positive number of seconds"),
                "{bad}: {text}"
            );
        }
    }

    fn kb_config(text: &str) -> KbConfig {
        KbConfig {
            file: YamlFile::parse(Path::new("c.yaml"), text).unwrap(),
            path: PathBuf::from("/kb/.openkb/config.yaml"),
        }
    }

    const ID: &str = "5b0c2c1e-8d3f-4a6b-9c2d-0e1f2a3b4c5d";

    #[test]
    fn state_section_absent_or_sqlite_is_local() {
        assert_eq!(
            kb_config("model: m\n").state().unwrap(),
            StateConfig::Sqlite
        );
        assert_eq!(
            kb_config("state: null\n").state().unwrap(),
            StateConfig::Sqlite
        );
        assert_eq!(
            kb_config("state:\n  backend: sqlite\n").state().unwrap(),
            StateConfig::Sqlite
        );
    }

    #[test]
    fn team_mode_reads_backend_and_kb_id() {
        let upper = ID.to_ascii_uppercase();
        let state = kb_config(&format!("state:\n  backend: postgres\n  kb_id: {upper}\n"))
            .state()
            .unwrap();
        let StateConfig::Postgres { kb_id } = state else {
            panic!("not team mode: {state:?}");
        };
        assert_eq!(kb_id.as_str(), ID);
        assert_eq!(
            kb_id.schema_name(),
            "openkb_5b0c2c1e8d3f4a6b9c2d0e1f2a3b4c5d"
        );
    }

    #[test]
    fn team_mode_without_a_valid_kb_id_names_the_file() {
        for text in [
            "state:\n  backend: postgres\n",
            "state:\n  backend: postgres\n  kb_id: 42\n",
            "state:\n  backend: postgres\n  kb_id: 5b0c2c1e-8d3f-4a6b-9c2d-0e1f2a3b4c5\n",
            "state:\n  backend: postgres\n  kb_id: 5b0c2c1e-8d3f-4a6b-9c2d-0e1f2a3b4c5g\n",
            "state:\n  backend: postgres\n  kb_id: 5b0c2c1e8d3f4a6b9c2d0e1f2a3b4c5d\n",
        ] {
            let message = kb_config(text).state().unwrap_err().to_string();
            assert!(message.contains("/kb/.openkb/config.yaml"), "{message}");
            assert!(message.contains("`state.kb_id`"), "{message}");
        }
    }

    #[test]
    fn unknown_backend_and_wrong_shapes_are_refused() {
        for (text, expected) in [
            ("state:\n  backend: mysql\n", "the backends are `sqlite`"),
            ("state: postgres\n", "`state` must be a mapping"),
            (
                "state:\n  backend: [postgres]\n",
                "`state.backend` must be a string",
            ),
        ] {
            let message = kb_config(text).state().unwrap_err().to_string();
            assert!(message.contains("/kb/.openkb/config.yaml"), "{message}");
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn passwords_and_connection_strings_under_state_are_refused() {
        let base = format!("state:\n  backend: postgres\n  kb_id: {ID}\n");
        for (extra, place) in [
            ("  url: postgresql://kb@db/kb\n", "`state.url`"),
            ("  URL: postgresql://kb@db/kb\n", "`state.url`"),
            ("  password: hunter2\n", "`state.password`"),
            ("  dsn: host=db\n", "`state.dsn`"),
            ("  db_password: x\n", "`state.db_password`"),
            (
                "  extra:\n    server: postgres://kb:hunter2@db:5432/kb\n",
                "`state.extra.server`",
            ),
            ("  notes: [\"host=db password=hunter2\"]\n", "`state.notes`"),
            (
                "  nested: {deeper: {PassWord: x}}\n",
                "`state.nested.deeper.password`",
            ),
        ] {
            let message = kb_config(&format!("{base}{extra}"))
                .state()
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("/kb/.openkb/config.yaml"),
                "{extra}: {message}"
            );
            assert!(message.contains(place), "{extra}: {message}");
            assert!(message.contains("OPENKB_STATE_URL"), "{message}");
            assert!(message.contains("~/.pgpass"), "{message}");
            assert!(
                !message.contains("hunter2"),
                "the secret is echoed: {message}"
            );
        }
        // Refused in local mode too: the file is shared whatever the backend.
        assert!(kb_config("state:\n  password: x\n").state().is_err());
        // A URL without a password elsewhere in the config is not a secret.
        assert!(
            kb_config(&format!("{base}  comment: see https://example.org/a@b\n"))
                .state()
                .is_ok()
        );
    }

    #[test]
    fn set_state_keeps_unknown_keys_and_round_trips() {
        let mut config = kb_config("model: m\nstate:\n  team_note: shared\nzeta: 1\n");
        let kb_id = KbId::parse(ID).unwrap();
        config.set_state(&StateConfig::Postgres {
            kb_id: kb_id.clone(),
        });
        let text = config.file.to_yaml().unwrap();
        let back = kb_config(&text);
        assert_eq!(back.state().unwrap(), StateConfig::Postgres { kb_id });
        assert!(text.contains("team_note: shared"), "{text}");
        assert!(text.contains("zeta: 1"), "{text}");
        let mut back = back;
        back.set_state(&StateConfig::Sqlite);
        let text = back.file.to_yaml().unwrap();
        assert_eq!(text, "model: m\nstate:\n  team_note: shared\nzeta: 1\n");
        let mut plain = kb_config("model: m\n");
        plain.set_state(&StateConfig::Postgres {
            kb_id: KbId::parse(ID).unwrap(),
        });
        plain.set_state(&StateConfig::Sqlite);
        assert_eq!(plain.file.to_yaml().unwrap(), "model: m\n");
    }

    #[test]
    fn random_kb_ids_are_version_4_and_distinct() {
        let a = KbId::new_random().unwrap();
        let b = KbId::new_random().unwrap();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(KbId::parse(id.as_str()).as_ref(), Some(id));
            assert_eq!(&id.as_str()[14..15], "4", "{id}");
            assert!("89ab".contains(&id.as_str()[19..20]), "{id}");
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
