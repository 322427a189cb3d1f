//! The one way openkb connects to PostgreSQL: every connection (the first one that checks
//! the schema, the pool's, the KB lock's session) goes through [`Connector::connect`], so all
//! of them are protected as the user's `sslmode` says.
//!
//! TLS is OpenSSL's, through `native-tls`: libpq's own library, so a CA file that works with
//! `psql` works here, and the checks map one to one (chain: the root certificates; host name:
//! `verify-full` only).

use postgres::{Client, Config};
use postgres_native_tls::MakeTlsConnector;

use super::Location;
use crate::error::{Error, Result};
use crate::state_url::{RootCert, SslMode, StateServer, Tls};

/// A TLS connector built once per store from the user's settings (the root certificate is
/// read once), cloned into the pool.
#[derive(Clone)]
pub(crate) struct Connector {
    make: MakeTlsConnector,
    tls: Tls,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls).finish()
    }
}

impl Connector {
    pub(crate) fn new(server: &StateServer) -> Result<Connector> {
        let tls = &server.tls;
        let mut builder = native_tls::TlsConnector::builder();
        match &tls.root_cert {
            None => {
                builder.danger_accept_invalid_certs(true);
            }
            Some(RootCert::System) => {}
            Some(RootCert::File(path)) => {
                let unreadable = |problem: String| {
                    Error::Invalid(format!(
                        "{}: cannot be used as the root certificate (sslrootcert / \
                         PGSSLROOTCERT): {problem}; point it at the PEM file of the CA that \
                         signed the server's certificate",
                        path.display()
                    ))
                };
                let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
                let certs = native_tls::Certificate::stack_from_pem(&pem)
                    .map_err(|e| unreadable(e.to_string()))?;
                if certs.is_empty() {
                    return Err(unreadable("it holds no PEM certificate".to_owned()));
                }
                // The named CAs alone, as libpq: a certificate the system trusts but the
                // user's CA did not sign is refused.
                builder.disable_built_in_roots(true);
                for cert in certs {
                    builder.add_root_certificate(cert);
                }
            }
        }
        builder.danger_accept_invalid_hostnames(!tls.check_host);
        let connector = builder
            .build()
            .map_err(|e| Error::Invalid(format!("cannot set up TLS for the state server: {e}")))?;
        Ok(Connector {
            make: MakeTlsConnector::new(connector),
            tls: tls.clone(),
        })
    }

    /// The `sslmode` connections are made with, for `status`.
    pub(crate) fn mode(&self) -> &'static str {
        self.tls.mode.as_str()
    }

    /// Connect as `config` says; a failure is the library's error, with what TLS has to do
    /// with it when it has.
    pub(crate) fn connect(&self, config: &Config, location: &Location) -> Result<Client> {
        self.connect_raw(config)
            .map_err(|e| self.error(e, config, location))
    }

    /// [`Connector::connect`] with the driver's error, for the pool (r2d2 reports it).
    pub(crate) fn connect_raw(
        &self,
        config: &Config,
    ) -> std::result::Result<Client, postgres::Error> {
        config.connect(self.make.clone())
    }

    /// A failed TLS handshake, or a server refusing a connection without TLS, is a server
    /// that cannot be reached as configured (exit 5), with the setting to look at.
    fn error(&self, e: postgres::Error, config: &Config, location: &Location) -> Error {
        let text = super::describe(&e);
        let mode = self.tls.mode.as_str();
        let refused_plain = e.as_db_error().is_some_and(|db| {
            db.code().code() == "28000" && db.message().contains("no encryption")
        });
        let hint = if text.contains("does not support TLS") {
            format!(
                "the server does not offer TLS, which sslmode={mode} requires; turn `ssl` on at \
                 the server, or (on a trusted network only) use sslmode=prefer"
            )
        } else if text.contains("hostname mismatch") {
            let host = match config.get_hosts().first() {
                Some(postgres::config::Host::Tcp(name)) => name.clone(),
                _ => String::new(),
            };
            format!(
                "the server's certificate does not name the host {host:?} (sslmode={mode} \
                 checks it); connect by a name the certificate has"
            )
        } else if text.contains("TLS") || tls_source(&e) {
            let roots = match &self.tls.root_cert {
                Some(RootCert::File(path)) => format!("the CA in sslrootcert={}", path.display()),
                Some(RootCert::System) => "the system's root certificates".to_owned(),
                None => "nothing (no root certificate)".to_owned(),
            };
            format!(
                "the TLS handshake failed with sslmode={mode}, the server's certificate checked \
                 against {roots}; set sslrootcert (or PGSSLROOTCERT) to the CA that signed the \
                 server's certificate"
            )
        } else if refused_plain && self.tls.mode == SslMode::Disable {
            "the server accepts only TLS connections from here; set sslmode=verify-full with \
             sslrootcert (or at least sslmode=require) in OPENKB_STATE_URL or PGSSLMODE"
                .to_owned()
        } else {
            return location.error(e);
        };
        Error::StateUnreachable {
            location: location.text.clone(),
            message: format!("{}\n  {hint}", first_line_of_tls(&text)),
        }
    }
}

/// OpenSSL's error text says the same thing twice (the error, then its source); the first
/// half is enough.
fn first_line_of_tls(text: &str) -> &str {
    match text.match_indices("): error:").next() {
        Some((end, _)) => &text[..=end],
        None => text,
    }
}

/// Whether the error came from the TLS library (a handshake or certificate failure).
fn tls_source(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.is::<native_tls::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}
