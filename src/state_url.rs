//! Where team mode's PostgreSQL connection comes from.
//!
//! Never from the KB folder: it is shared by the whole team (and often synced), so a
//! connection string there would hand every reader the server and, with it, the password.
//! Each user sets `OPENKB_STATE_URL` (a libpq `key=value` string or a `postgresql://` URL);
//! what it leaves out comes from libpq's own variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`) and the password from `~/.pgpass` (or `PGPASSFILE`), with
//! libpq's precedence: the URL first, then the variable, then the password file. The
//! `postgres` crate reads none of them itself, so [`StateEnv::config`] does it, in one place.
//!
//! The environment is read once, at the command line's edge, into `Settings::state`
//! ([`StateEnv::from_lookup`]); the library takes the values and reads no variable itself.
//!
//! TLS follows libpq too: `sslmode` and `sslrootcert` in the connection string, else
//! `PGSSLMODE` / `PGSSLROOTCERT`, else `prefer` and `~/.postgresql/root.crt` ([`Tls`]). The
//! `postgres` crate knows neither `verify-ca`, `verify-full` nor `sslrootcert`, so they are
//! taken out of the string before it parses the rest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The variable naming the state server in team mode.
pub const STATE_URL_ENV: &str = "OPENKB_STATE_URL";

/// The values team mode's connection is built from, as read from the environment. Its
/// `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StateEnv {
    /// `OPENKB_STATE_URL`.
    pub url: Option<String>,
    pub pghost: Option<String>,
    pub pgport: Option<String>,
    pub pguser: Option<String>,
    pub pgpassword: Option<String>,
    pub pgdatabase: Option<String>,
    /// `PGPASSFILE`, else `$HOME/.pgpass`.
    pub passfile: Option<PathBuf>,
    /// `USER` (else `LOGNAME`): libpq's default user, for the password file.
    pub os_user: Option<String>,
    pub pgsslmode: Option<String>,
    pub pgsslrootcert: Option<String>,
    /// `$HOME/.postgresql/root.crt`: libpq's root certificate when none is named.
    pub default_root_cert: Option<PathBuf>,
}

/// libpq's `sslmode` values (`allow` is left out: it tries without TLS first, which no
/// server worth protecting needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, the certificate unchecked; else plain text.
    Prefer,
    /// TLS always; the certificate unchecked unless a root certificate is given (libpq then
    /// checks the chain, as for `verify-ca`).
    Require,
    /// TLS, the certificate chain checked against the root certificate.
    VerifyCa,
    /// `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str, source: &str) -> Result<SslMode> {
        match value.trim() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(Error::Invalid(format!(
                "{source}: sslmode={other:?} is not one openkb knows; use disable, prefer, \
                 require, verify-ca or verify-full"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The certificates a server's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

/// How a connection is protected, as libpq would do it for the same settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// `None`: the certificate is not checked (only `disable`, `prefer` and `require` allow it).
    pub root_cert: Option<RootCert>,
    /// Check that the certificate names the host (`verify-full`).
    pub check_host: bool,
}

impl Tls {
    /// No TLS at all: a server over a Unix socket (where PostgreSQL never speaks TLS).
    pub fn disabled() -> Tls {
        Tls {
            mode: SslMode::Disable,
            root_cert: None,
            check_host: false,
        }
    }
}

/// Where team mode's state server is and how to talk to it.
#[derive(Clone, Debug)]
pub struct StateServer {
    pub config: postgres::Config,
    pub tls: Tls,
}

impl StateServer {
    /// A server reached as `config` says, with TLS as libpq's defaults give it (`prefer`,
    /// the certificate unchecked).
    pub fn plain(config: postgres::Config) -> StateServer {
        let mut server = StateServer {
            config,
            tls: Tls {
                mode: SslMode::Prefer,
                root_cert: None,
                check_host: false,
            },
        };
        server.apply_mode();
        server
    }

    /// Tell the `postgres` crate whether to ask for TLS. Over Unix sockets it never does,
    /// as libpq (PostgreSQL does not speak TLS there; asking costs a round trip).
    fn apply_mode(&mut self) {
        use postgres::config::{Host, SslMode as Wire};
        let all_sockets = !self.config.get_hosts().is_empty()
            && self
                .config
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_)));
        let wire = match self.tls.mode {
            _ if all_sockets => Wire::Disable,
            SslMode::Disable => Wire::Disable,
            SslMode::Prefer => Wire::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Wire::Require,
        };
        self.config.ssl_mode(wire);
    }
}

impl std::fmt::Debug for StateEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_deref().map(|url| {
            if crate::config::looks_like_secret(url) {
                "(a connection string with a password)"
            } else {
                url
            }
        });
        f.debug_struct("StateEnv")
            .field("url", &url)
            .field("pghost", &self.pghost)
            .field("pgport", &self.pgport)
            .field("pguser", &self.pguser)
            .field("pgpassword", &self.pgpassword.as_ref().map(|_| "(set)"))
            .field("pgdatabase", &self.pgdatabase)
            .field("passfile", &self.passfile)
            .field("os_user", &self.os_user)
            .field("pgsslmode", &self.pgsslmode)
            .field("pgsslrootcert", &self.pgsslrootcert)
            .field("default_root_cert", &self.default_root_cert)
            .finish()
    }
}

impl StateEnv {
    /// `OPENKB_STATE_URL`, libpq's variables and where the password file is, as `lookup`
    /// gives them by name (`Settings::from_lookup`); a value that is not UTF-8 is an error
    /// naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<StateEnv> {
        let var = |name: &str| match lookup(name).map(OsString::into_string) {
            None => Ok(None),
            Some(Ok(value)) if value.trim().is_empty() => Ok(None),
            Some(Ok(value)) => Ok(Some(value)),
            Some(Err(_)) => Err(Error::Invalid(format!(
                "{name} is not valid UTF-8; set it to a PostgreSQL connection setting"
            ))),
        };
        let passfile = match lookup("PGPASSFILE") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => lookup("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| Path::new(&home).join(".pgpass")),
        };
        Ok(StateEnv {
            url: var(STATE_URL_ENV)?,
            pghost: var("PGHOST")?,
            pgport: var("PGPORT")?,
            pguser: var("PGUSER")?,
            pgpassword: var("PGPASSWORD")?,
            pgdatabase: var("PGDATABASE")?,
            passfile,
            os_user: var("USER")?.or(var("LOGNAME")?),
            pgsslmode: var("PGSSLMODE")?,
            pgsslrootcert: var("PGSSLROOTCERT")?,
            default_root_cert: lookup("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| Path::new(&home).join(".postgresql").join("root.crt")),
        })
    }

    /// The connection settings: `OPENKB_STATE_URL`, completed by libpq's variables and the
    /// password file, and how TLS protects the connection. `kb` (the KB folder) is named in
    /// the error when nothing says where the server is.
    pub fn config(&self, kb: &Path) -> Result<StateServer> {
        let (url, url_mode, url_root) = match &self.url {
            Some(url) => {
                let (rest, mode, root) = take_tls_options(url)?;
                (Some(rest), mode, root)
            }
            None => (None, None, None),
        };
        let config = self.server_config(kb, url.as_deref())?;
        let mode = match (url_mode, &self.pgsslmode) {
            (Some(mode), _) => Some(SslMode::parse(&mode, STATE_URL_ENV)?),
            (None, Some(mode)) => Some(SslMode::parse(mode, "PGSSLMODE")?),
            (None, None) => None,
        };
        let root = url_root.or_else(|| self.pgsslrootcert.clone());
        let mut server = StateServer {
            config,
            tls: self.tls(mode, root)?,
        };
        server.apply_mode();
        Ok(server)
    }

    /// libpq's rules: a named root certificate must exist; `system` means `verify-full`
    /// (and refuses anything weaker); `require` with a root certificate checks the chain;
    /// `verify-*` without one is refused, since nothing could be checked.
    fn tls(&self, mode: Option<SslMode>, root: Option<String>) -> Result<Tls> {
        let root = match root.as_deref() {
            Some("system") => Some(RootCert::System),
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(Error::Invalid(format!(
                        "{}: the root certificate (sslrootcert / PGSSLROOTCERT) does not \
                         exist or is not a file; point it at the PEM file of the CA that \
                         signed the server's certificate",
                        path.display()
                    )));
                }
                Some(RootCert::File(path))
            }
            None => self
                .default_root_cert
                .as_ref()
                .filter(|path| path.is_file())
                .map(|path| RootCert::File(path.clone())),
        };
        let mode = match (mode, &root) {
            (Some(mode), _) => mode,
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(Error::Invalid(format!(
                "sslrootcert=system needs sslmode=verify-full (libpq's rule: the system's \
                 roots vouch for host names, not for a chain alone), but sslmode={} was given; \
                 use verify-full or name a CA file",
                mode.as_str()
            )));
        }
        let checks = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        if checks && root.is_none() {
            return Err(Error::Invalid(format!(
                "sslmode={} checks the server's certificate, but no root certificate was \
                 given: set sslrootcert (in {STATE_URL_ENV}) or PGSSLROOTCERT to the CA's PEM \
                 file, or to `system` for the operating system's roots, or put it in \
                 ~/.postgresql/root.crt",
                mode.as_str()
            )));
        }
        Ok(Tls {
            root_cert: match mode {
                SslMode::Disable | SslMode::Prefer => None,
                _ => root,
            },
            check_host: mode == SslMode::VerifyFull,
            mode,
        })
    }

    /// Where the server is and who connects (everything but TLS).
    fn server_config(&self, kb: &Path, url: Option<&str>) -> Result<postgres::Config> {
        let pgport = match &self.pgport {
            None => None,
            Some(port) => Some(port.trim().parse::<u16>().map_err(|_| {
                Error::Invalid(format!(
                    "PGPORT={port:?} is not a port number; set it to the server's port (e.g. \
                     5432) or unset it"
                ))
            })?),
        };
        let mut config = match url {
            Some(url) => {
                let url = match pgport {
                    Some(port) => with_default_port(url, port),
                    None => url.to_owned(),
                };
                postgres::Config::from_str(&url).map_err(|e| {
                    Error::Invalid(format!(
                        "{STATE_URL_ENV} is not a PostgreSQL connection string ({e}); set it to \
                         a URL such as postgresql://user@host:5432/dbname or to libpq settings \
                         such as \"host=db.example port=5432 user=kb dbname=openkb\""
                    ))
                })?
            }
            None if self.pghost.is_some() => postgres::Config::new(),
            None => {
                return Err(Error::Invalid(format!(
                    "{} is a team KB (its state is in PostgreSQL, see .openkb/config.yaml) but \
                     {STATE_URL_ENV} is not set\n  set {STATE_URL_ENV} to the server, e.g. \
                     postgresql://user@host:5432/dbname (or set PGHOST and the other libpq \
                     variables); keep the password in PGPASSWORD or ~/.pgpass",
                    kb.display()
                )));
            }
        };
        if config.get_hosts().is_empty()
            && let Some(hosts) = &self.pghost
        {
            for host in hosts.split(',') {
                config.host(host.trim());
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = pgport
        {
            config.port(port);
        }
        if config.get_user().is_none()
            && let Some(user) = &self.pguser
        {
            config.user(user);
        }
        if config.get_dbname().is_none()
            && let Some(dbname) = &self.pgdatabase
        {
            config.dbname(dbname);
        }
        if config.get_hosts().is_empty() {
            return Err(Error::Invalid(format!(
                "{STATE_URL_ENV} names no server: add host=... (or @host in the URL), or set \
                 PGHOST"
            )));
        }
        if config.get_password().is_none() {
            if let Some(password) = &self.pgpassword {
                config.password(password.as_str());
            } else if let Some(password) = self.password_from_file(&config) {
                config.password(password);
            }
        }
        Ok(config)
    }

    /// The password `~/.pgpass` (or `PGPASSFILE`) gives for the first host of `config`, as
    /// libpq reads it: `host:port:database:user:password` lines, `*` matching anything, `\`
    /// escaping `:` and `\`, the first match winning. A file that group or others can read is
    /// ignored with a warning, as libpq does.
    fn password_from_file(&self, config: &postgres::Config) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.passfile.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            crate::notice::warn(&format!(
                "{}: ignored, because group or others can read it (libpq's rule); run \
                 `chmod 600 {}`",
                path.display(),
                path.display()
            ));
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let host = match config.get_hosts().first()? {
            postgres::config::Host::Tcp(name) => name.clone(),
            // libpq matches a socket connection to the default socket folder as localhost.
            postgres::config::Host::Unix(_) => "localhost".to_owned(),
        };
        let port = config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string();
        let user = config
            .get_user()
            .map(str::to_owned)
            .or_else(|| self.os_user.clone())?;
        let dbname = config.get_dbname().unwrap_or(&user).to_owned();
        pgpass_lookup(&text, [&host, &port, &dbname, &user])
    }
}

/// The TLS options libpq knows and the `postgres` crate does not, taken out of a connection
/// string: the string without them (for the crate to parse), `sslmode` and `sslrootcert`.
type TakenTls = (String, Option<String>, Option<String>);

fn take_tls_options(url: &str) -> Result<TakenTls> {
    let is_tls = |key: &str| matches!(key, "sslmode" | "sslrootcert");
    let mut mode = None;
    let mut root = None;
    let mut keep = |key: &str, value: String| {
        match key {
            "sslmode" => mode = Some(value),
            _ => root = Some(value),
        };
    };
    if let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
    {
        let Some((head, query)) = rest.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for param in query.split('&') {
            match param.split_once('=') {
                Some((key, value)) if is_tls(key) => keep(key, percent_decode(value)?),
                _ => kept.push(param),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        return Ok((format!("{scheme}://{head}{query}"), mode, root));
    }
    let mut kept = Vec::new();
    for (key, value) in key_value_pairs(url)? {
        if is_tls(&key) {
            keep(&key, value);
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), mode, root))
}

/// A libpq `key=value` string as pairs: spaces around `=` allowed, values single-quoted or
/// bare, `\` escaping the next character in both.
fn key_value_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let bad = |why: &str| {
        Error::Invalid(format!(
            "{STATE_URL_ENV} is not a PostgreSQL connection string ({why}); set it to a URL \
             such as postgresql://user@host:5432/dbname or to libpq settings such as \
             \"host=db.example port=5432 user=kb dbname=openkb\""
        ))
    };
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("{key:?} has no `=value`")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad(&format!("the value of {key} has no closing quote"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `%XX` escapes of a URL's query value decoded (a path in `sslrootcert`).
fn percent_decode(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{STATE_URL_ENV}: {value:?} has a `%` not followed by two hex digits; \
                         write a `%` as %25"
                    ))
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::Invalid(format!(
            "{STATE_URL_ENV}: {value:?} decodes to bytes that are not UTF-8"
        ))
    })
}

/// `url` with `port` for every host it names without one: libpq's `PGPORT` fills what the
/// connection string leaves out, while the `postgres` crate would put 5432 there.
fn with_default_port(url: &str, port: u16) -> String {
    let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
    else {
        let names_port = url
            .split_whitespace()
            .any(|word| word.trim_start().starts_with("port"));
        return if names_port {
            url.to_owned()
        } else {
            format!("{url} port={port}")
        };
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if hosts.is_empty() {
        return url.to_owned();
    }
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|chunk| {
            let host_end = if chunk.starts_with('[') {
                chunk.find(']').map_or(chunk.len(), |i| i + 1)
            } else {
                0
            };
            if chunk[host_end..].contains(':') {
                chunk.to_owned()
            } else {
                format!("{chunk}:{port}")
            }
        })
        .collect();
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{}{tail}", hosts.join(","))
}

/// The password of the first `.pgpass` line matching `wanted` (host, port, database, user).
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass_line(line);
            let [host, port, db, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, db, user]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
            matches.then(|| password.clone())
        })
}

/// Split a `.pgpass` line on unescaped `:` (the fifth field, the password, takes the rest).
fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Where a connection goes, for messages and `status`: hosts, port, user and database, never
/// the password.
pub fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut out = format!("host={}", hosts.join(","));
    if let Some(port) = config.get_ports().first() {
        out.push_str(&format!(" port={port}"));
    }
    if let Some(user) = config.get_user() {
        out.push_str(&format!(" user={user}"));
    }
    if let Some(dbname) = config.get_dbname() {
        out.push_str(&format!(" dbname={dbname}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres::config::Host;

    const KB: &str = "/kb";

    fn password(config: &postgres::Config) -> Option<&str> {
        config
            .get_password()
            .map(|p| std::str::from_utf8(p).unwrap())
    }

    fn env_of(vars: &[(&str, &[u8])]) -> Result<StateEnv> {
        use std::os::unix::ffi::OsStrExt;
        StateEnv::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsStr::from_bytes(v).to_owned())
        })
    }

    #[test]
    fn the_environment_is_read_through_the_settings_lookup() {
        let env = env_of(&[
            ("OPENKB_STATE_URL", b"postgresql://kb:hunter2@db/team"),
            ("PGPASSWORD", b"also-secret"),
            ("PGUSER", b"  "),
            ("HOME", b"/home/u"),
            ("LOGNAME", b"login"),
        ])
        .unwrap();
        assert_eq!(env.os_user.as_deref(), Some("login"));
        assert_eq!(env.url.as_deref(), Some("postgresql://kb:hunter2@db/team"));
        assert_eq!(env.pguser, None, "a blank value is unset");
        assert_eq!(env.passfile, Some(PathBuf::from("/home/u/.pgpass")));
        let shown = format!("{env:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("also-secret"),
            "{shown}"
        );

        let env = env_of(&[("PGPASSFILE", b"/etc/pgpass"), ("HOME", b"/home/u")]).unwrap();
        assert_eq!(env.passfile, Some(PathBuf::from("/etc/pgpass")));
        let message = env_of(&[("PGHOST", b"\xff\xfe")]).unwrap_err().to_string();
        assert!(message.contains("PGHOST is not valid UTF-8"), "{message}");
    }

    #[test]
    fn team_mode_without_url_or_pghost_says_what_to_set() {
        let message = StateEnv::default()
            .config(Path::new(KB))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/kb is a team KB"), "{message}");
        assert!(message.contains("OPENKB_STATE_URL is not set"), "{message}");
        assert!(message.contains("PGHOST"), "{message}");
    }

    #[test]
    fn a_url_is_completed_by_libpq_variables_but_never_overridden() {
        let env = StateEnv {
            url: Some("postgresql://kb@db.example/openkb".into()),
            pghost: Some("other".into()),
            pgport: Some("6543".into()),
            pguser: Some("someone".into()),
            pgpassword: Some("from-env".into()),
            pgdatabase: Some("otherdb".into()),
            passfile: None,
            os_user: Some("login".into()),
            ..StateEnv::default()
        };
        let config = env.config(Path::new(KB)).unwrap().config;
        assert_eq!(config.get_hosts(), [Host::Tcp("db.example".into())]);
        assert_eq!(config.get_ports(), [6543]);
        assert_eq!(config.get_user(), Some("kb"));
        assert_eq!(config.get_dbname(), Some("openkb"));
        assert_eq!(password(&config), Some("from-env"));
        assert_eq!(
            describe(&config),
            "host=db.example port=6543 user=kb dbname=openkb"
        );
    }

    #[test]
    fn libpq_variables_alone_make_a_connection() {
        let env = StateEnv {
            pghost: Some("/run/pg,db2".into()),
            pguser: Some("kb".into()),
            ..StateEnv::default()
        };
        let config = env.config(Path::new(KB)).unwrap().config;
        assert_eq!(
            config.get_hosts(),
            [Host::Unix("/run/pg".into()), Host::Tcp("db2".into())]
        );
        assert_eq!(config.get_user(), Some("kb"));
    }

    #[test]
    fn key_value_strings_work_and_bad_values_are_named() {
        let env = StateEnv {
            url: Some("host=db port=5433 user=kb dbname=team".into()),
            ..StateEnv::default()
        };
        let config = env.config(Path::new(KB)).unwrap().config;
        assert_eq!(describe(&config), "host=db port=5433 user=kb dbname=team");

        let bad = StateEnv {
            url: Some("host=db bogus_key=1".into()),
            ..StateEnv::default()
        };
        let message = bad.config(Path::new(KB)).unwrap_err().to_string();
        assert!(
            message.contains("OPENKB_STATE_URL is not a PostgreSQL"),
            "{message}"
        );

        let port = StateEnv {
            url: Some("postgresql://kb@db/team".into()),
            pgport: Some("54x".into()),
            ..StateEnv::default()
        };
        let given = |url: &str| StateEnv {
            url: Some(url.into()),
            pgport: Some("6000".into()),
            ..StateEnv::default()
        };
        let ports = |url: &str| {
            given(url)
                .config(Path::new(KB))
                .unwrap()
                .config
                .get_ports()
                .to_vec()
        };
        assert_eq!(
            ports("postgresql://kb@db:5433,[::1],h3:7/x"),
            [5433, 6000, 7]
        );
        assert_eq!(ports("postgresql://db?user=kb"), [6000]);
        assert_eq!(ports("host=db port=5433"), [5433]);
        assert_eq!(ports("host=db user=kb"), [6000]);
        assert_eq!(ports("postgresql:///x?host=/run/pg"), [6000]);
        let message = port.config(Path::new(KB)).unwrap_err().to_string();
        assert!(message.contains("PGPORT=\"54x\""), "{message}");

        let no_host = StateEnv {
            url: Some("user=kb dbname=team".into()),
            ..StateEnv::default()
        };
        let message = no_host.config(Path::new(KB)).unwrap_err().to_string();
        assert!(message.contains("names no server"), "{message}");
    }

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let passfile = dir.path().join("pgpass");
        std::fs::write(
            &passfile,
            "# comment\n\
             other:*:*:*:wrong\n\
             db:5432:team:k\\:b:p\\:a\\\\ss:word\n\
             db:*:*:kb:second\n\
             *:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = |url: &str| StateEnv {
            url: Some(url.into()),
            passfile: Some(passfile.clone()),
            ..StateEnv::default()
        };
        let config = |url: &str| env(url).config(Path::new(KB)).unwrap().config;
        assert_eq!(
            password(&config("host=db user='k:b' dbname=team")),
            Some("p:a\\ss:word")
        );
        assert_eq!(password(&config("postgresql://kb@db/any")), Some("second"));
        assert_eq!(
            password(&config("postgresql://x@elsewhere/y")),
            Some("fallback")
        );
        // The URL's own password and PGPASSWORD come first.
        assert_eq!(
            password(&config("postgresql://kb:mine@db/any")),
            Some("mine")
        );
        let with_variable = StateEnv {
            pgpassword: Some("variable".into()),
            ..env("postgresql://kb@db/any")
        };
        assert_eq!(
            password(&with_variable.config(Path::new(KB)).unwrap().config),
            Some("variable")
        );
        // Readable by others: ignored, as libpq does.
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(password(&config("postgresql://kb@db/any")), None);
    }

    #[test]
    fn tls_settings_follow_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("my ca.pem");
        std::fs::write(&ca, "not read here").unwrap();
        let server = |url: &str, vars: StateEnv| {
            StateEnv {
                url: Some(url.into()),
                ..vars
            }
            .config(Path::new(KB))
        };
        let tls = |url: &str| server(url, StateEnv::default()).unwrap().tls;

        // libpq's default: prefer, nothing checked; the crate is asked for TLS when offered.
        let plain = server("host=db user=kb", StateEnv::default()).unwrap();
        assert_eq!(plain.tls.mode, SslMode::Prefer);
        assert_eq!(plain.tls.root_cert, None);
        assert_eq!(
            plain.config.get_ssl_mode(),
            postgres::config::SslMode::Prefer
        );

        // Options the crate does not know are taken out; quoting and escapes survive.
        let full = server(
            &format!(
                "host=db user='k b' sslmode = verify-full sslrootcert='{}' dbname=x\\ y",
                ca.display()
            ),
            StateEnv::default(),
        )
        .unwrap();
        assert_eq!(full.tls.mode, SslMode::VerifyFull);
        assert!(full.tls.check_host);
        assert_eq!(full.tls.root_cert, Some(RootCert::File(ca.clone())));
        assert_eq!(full.config.get_user(), Some("k b"));
        assert_eq!(full.config.get_dbname(), Some("x y"));
        assert_eq!(
            full.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );

        let encoded = ca.display().to_string().replace(' ', "%20");
        let url = tls(&format!(
            "postgresql://kb@db/x?sslmode=verify-ca&application_name=a&sslrootcert={encoded}"
        ));
        assert_eq!(url.mode, SslMode::VerifyCa);
        assert!(!url.check_host);
        assert_eq!(url.root_cert, Some(RootCert::File(ca.clone())));

        // require checks the chain when a root certificate is given, as libpq does.
        let env_ca = StateEnv {
            pgsslmode: Some("require".into()),
            pgsslrootcert: Some(ca.display().to_string()),
            ..StateEnv::default()
        };
        let required = server("host=db", env_ca.clone()).unwrap().tls;
        assert_eq!(required.mode, SslMode::Require);
        assert_eq!(required.root_cert, Some(RootCert::File(ca.clone())));
        // The connection string wins over PGSSLMODE.
        assert_eq!(
            server("host=db sslmode=disable", env_ca).unwrap().tls.mode,
            SslMode::Disable
        );

        // ~/.postgresql/root.crt is used when it exists.
        let home_ca = StateEnv {
            default_root_cert: Some(ca.clone()),
            pgsslmode: Some("verify-ca".into()),
            ..StateEnv::default()
        };
        assert_eq!(
            server("host=db", home_ca).unwrap().tls.root_cert,
            Some(RootCert::File(ca.clone()))
        );

        // system means verify-full, and refuses weaker modes.
        assert_eq!(tls("host=db sslrootcert=system").mode, SslMode::VerifyFull);
        let err = |url: &str| server(url, StateEnv::default()).unwrap_err().to_string();
        assert!(
            err("host=db sslrootcert=system sslmode=require").contains("needs sslmode=verify-full")
        );
        assert!(err("host=db sslmode=verify-full").contains("no root certificate was given"));
        assert!(err("host=db sslmode=allow").contains("sslmode=\"allow\""));
        let missing = err("host=db sslmode=verify-ca sslrootcert=/nonexistent/ca.pem");
        assert!(
            missing.contains("/nonexistent/ca.pem") && missing.contains("does not exist"),
            "{missing}"
        );
        assert!(err("host=db user='kb").contains("no closing quote"));

        // Over Unix sockets PostgreSQL never speaks TLS: the crate is not asked to.
        let socket = server("host=/run/pg sslmode=require", StateEnv::default()).unwrap();
        assert_eq!(
            socket.config.get_ssl_mode(),
            postgres::config::SslMode::Disable
        );
    }
}
