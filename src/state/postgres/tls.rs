//! The one way openkb connects to PostgreSQL: every connection (the first one that checks
//! the schema, the pool's, the KB lock's session) goes through [`Connector::connect`], so all
//! of them are protected as the user's `sslmode` says.
//!
//! TLS is rustls's with the `ring` provider: pure Rust, linked into the binary, so a local KB
//! pays nothing at start-up for team mode and no system TLS library is needed to build. The
//! checks map to libpq's one to one: the chain to the root certificates unless no root is
//! given (`require`), the host name for `verify-full` only, and the handshake's signatures
//! always.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Config, Socket};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Location;
use crate::error::{Error, Result};
use crate::state_url::{RootCert, SslMode, StateServer, Tls};

/// A TLS connector built once per store from the user's settings (the root certificate is
/// read once), cloned into the pool.
#[derive(Clone)]
pub(crate) struct Connector {
    make: MakeConnect,
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match &tls.root_cert {
            None => Arc::new(AnyCertificate(provider.clone())),
            Some(root) => {
                let roots = Arc::new(root_store(root)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| setup_error(&e))?;
                if tls.check_host {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup_error(&e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Connector {
            make: MakeConnect(MakeRustlsConnect::new(config)),
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
        } else if rustls_error(&e).is_some_and(names_another_host) {
            let host = match config.get_hosts().first() {
                Some(postgres::config::Host::Tcp(name)) => name.clone(),
                _ => String::new(),
            };
            format!(
                "the server's certificate does not name the host {host:?} (sslmode={mode} \
                 checks it); connect by a name the certificate has"
            )
        } else if text.contains("TLS") || rustls_error(&e).is_some() {
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
            message: format!("{text}\n  {hint}"),
        }
    }
}

/// rustls's connector, able to take the empty host name tokio-postgres gives it for a Unix
/// socket: no TLS is ever started there (the server does not offer it), so a name that is not
/// one fails only a handshake that is actually attempted, with the reason.
#[derive(Clone)]
struct MakeConnect(MakeRustlsConnect);

impl MakeTlsConnect<Socket> for MakeConnect {
    type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = NamedConnect<<MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect>;
    type Error = std::convert::Infallible;

    fn make_tls_connect(
        &mut self,
        hostname: &str,
    ) -> std::result::Result<Self::TlsConnect, Self::Error> {
        Ok(
            match MakeTlsConnect::<Socket>::make_tls_connect(&mut self.0, hostname) {
                Ok(connect) => NamedConnect::Named(connect),
                Err(e) => NamedConnect::Unnamed(format!(
                    "the host {hostname:?} cannot be checked against a certificate: {e}"
                )),
            },
        )
    }
}

enum NamedConnect<C> {
    Named(C),
    Unnamed(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, C> TlsConnect<S> for NamedConnect<C>
where
    C: TlsConnect<S>,
    C::Future: Send + 'static,
    C::Stream: Send + 'static,
{
    type Stream = C::Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<C::Stream, BoxError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        match self {
            NamedConnect::Named(connect) => {
                let handshake = connect.connect(stream);
                Box::pin(async move { handshake.await.map_err(Into::into) })
            }
            NamedConnect::Unnamed(why) => Box::pin(std::future::ready(Err(why.into()))),
        }
    }
}

/// The rustls error under a failed connection: tokio-rustls hands it over inside an
/// `io::Error`, whose `source()` skips it, so each link is looked into.
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(found) = inner.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|wrapped| wrapped.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        source = inner.source();
    }
    None
}

fn names_another_host(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

fn setup_error(e: &dyn std::fmt::Display) -> Error {
    Error::Invalid(format!("cannot set up TLS for the state server: {e}"))
}

/// The certificates a server's chain must lead to: the PEM file the user named (alone, as
/// libpq: a certificate the system trusts but the user's CA did not sign is refused), or the
/// system's store for `sslrootcert=system`.
fn root_store(root: &RootCert) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            let unreadable = |problem: String| {
                Error::Invalid(format!(
                    "{}: cannot be used as the root certificate (sslrootcert / \
                     PGSSLROOTCERT): {problem}; point it at the PEM file of the CA that \
                     signed the server's certificate",
                    path.display()
                ))
            };
            let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| unreadable(e.to_string()))?;
            if certs.is_empty() {
                return Err(unreadable("it holds no PEM certificate".to_owned()));
            }
            for cert in certs {
                store.add(cert).map_err(|e| unreadable(e.to_string()))?;
            }
        }
        RootCert::System => {
            // Unreadable files among the system's are skipped, as OpenSSL does; only a store
            // with nothing usable in it is an error.
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none was found".to_owned(), ToString::to_string);
                return Err(Error::Invalid(format!(
                    "sslrootcert=system: cannot load the system's root certificates ({why}); \
                     install the ca-certificates package or set sslrootcert to a CA's PEM file"
                )));
            }
        }
    }
    Ok(store)
}

/// `require` without a root certificate: encryption without authentication, as libpq. Any
/// certificate is taken, but the handshake must still be signed by the key it holds.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain to the root certificates is checked in full, the host name not at
/// all, so the one error taken from the full check is the certificate naming another host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(e) if names_another_host(&e) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
