//! Team mode over TLS, against a real server that accepts TCP only with TLS (the harness's
//! `tls_server`, its certificate for `localhost` signed by a CA of its own): each `sslmode`
//! does what libpq's does, and a connection that must not be made writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{self, stderr, stdout};
use crate::pg_server;

/// A temp folder with its own HOME, a document, and a KB folder `kb` made with `url`.
struct TlsKb {
    dir: tempfile::TempDir,
    /// The operating system's root store, as `SSL_CERT_FILE` names it, for `sslrootcert=system`.
    system_roots: Option<PathBuf>,
}

impl TlsKb {
    fn new() -> TlsKb {
        let kb = TlsKb {
            dir: tempfile::tempdir().unwrap(),
            system_roots: None,
        };
        std::fs::create_dir_all(kb.path().join("home")).unwrap();
        std::fs::write(kb.path().join("a.md"), "alpha\n").unwrap();
        kb
    }

    fn with_system_roots(mut self, file: &Path) -> TlsKb {
        self.system_roots = Some(file.to_path_buf());
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn kb(&self) -> PathBuf {
        self.path().join("kb")
    }

    fn run(&self, url: &str, args: &[&str]) -> Output {
        let mut cmd: Command = harness::openkb(&self.path().join("home"), self.path());
        cmd.env("OPENKB_STATE_URL", url)
            .arg("--kb-dir")
            .arg(self.kb())
            .args(args);
        if let Some(file) = &self.system_roots {
            cmd.env("SSL_CERT_FILE", file);
        }
        cmd.output().unwrap()
    }

    fn init(&self, url: &str) -> Output {
        self.run(
            url,
            &["init", "-m", "m", "-l", "en", "--backend", "postgres"],
        )
    }

    /// Init, add and list over `url`: the whole path of a team command. Returns what
    /// `status --json` says of the connection's encryption.
    fn works_over(&self, url: &str) -> serde_json::Value {
        let out = self.init(url);
        assert!(out.status.success(), "init: {}", stderr(&out));
        let doc = self.path().join("a.md");
        let out = self.run(url, &["add", doc.to_str().unwrap()]);
        assert!(out.status.success(), "add: {}", stderr(&out));
        let out = self.run(url, &["list"]);
        assert!(out.status.success(), "list: {}", stderr(&out));
        assert!(stdout(&out).contains('a'), "list: {}", stdout(&out));
        let out = self.run(url, &["status", "--json"]);
        assert!(out.status.success(), "status: {}", stderr(&out));
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        status["state"]["tls"].clone()
    }

    /// `init` over `url` fails with exit 5, a message holding `expected`, and no KB folder.
    fn refused(&self, url: &str, expected: &str) -> String {
        let out = self.init(url);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("nothing was committed"), "{message}");
        assert!(
            !self.kb().join(".openkb").exists(),
            "init left a KB behind: {message}"
        );
        message
    }
}

fn ca() -> String {
    pg_server::tls_server().ca().display().to_string()
}

#[test]
fn verify_full_with_the_right_ca_connects() {
    // The server takes TCP only with TLS (see the disable case), so this ran encrypted.
    let server = pg_server::tls_server();
    let kb = TlsKb::new();
    kb.works_over(&server.tcp_url(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={}", ca()),
    ));
}

#[test]
fn verify_full_refuses_a_certificate_of_another_ca_or_another_host() {
    let server = pg_server::tls_server();
    let other_ca = server.other_ca().display().to_string();
    TlsKb::new().refused(
        &server.tcp_url(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={other_ca}"),
        ),
        "signed the server's certificate",
    );
    let message = TlsKb::new().refused(
        &server.tcp_url(
            "db.invalid",
            &format!("sslmode=verify-full sslrootcert={}", ca()),
        ),
        "does not name the host \"db.invalid\"",
    );
    assert!(
        message.contains("certificate not valid for name"),
        "{message}"
    );
    // verify-ca checks the chain only: the wrong name is accepted, the wrong CA is not.
    TlsKb::new().works_over(&server.tcp_url(
        "db.invalid",
        &format!("sslmode=verify-ca sslrootcert={}", ca()),
    ));
    TlsKb::new().refused(
        &server.tcp_url(
            "localhost",
            &format!("sslmode=verify-ca sslrootcert={other_ca}"),
        ),
        "sslmode=verify-ca",
    );
}

#[test]
fn require_and_prefer_connect_without_a_ca_and_disable_is_refused_by_the_server() {
    let server = pg_server::tls_server();
    TlsKb::new().works_over(&server.tcp_url("db.invalid", "sslmode=require"));
    // libpq's default (prefer): TLS since the server offers it.
    let tls = TlsKb::new().works_over(&server.tcp_url("db.invalid", ""));
    assert!(
        tls.as_str()
            .is_some_and(|t| t.ends_with("(sslmode=prefer)")),
        "{tls}"
    );
    TlsKb::new().refused(
        &server.tcp_url("localhost", "sslmode=disable"),
        "accepts only TLS connections",
    );
}

#[test]
fn prefer_falls_back_to_plain_text_where_the_server_has_no_tls() {
    // The shared server has ssl off: prefer connects without TLS, require refuses.
    let server = pg_server::server();
    let url = format!(
        "host=127.0.0.1 port={} user={} dbname=postgres",
        server.port(),
        pg_server::ROLE
    );
    assert_eq!(
        TlsKb::new().works_over(&format!("{url} sslmode=prefer")),
        serde_json::Value::Null,
        "status must say the connection is not encrypted"
    );
    TlsKb::new().refused(
        &format!("{url} sslmode=require"),
        "does not offer TLS, which sslmode=require requires",
    );
}

#[test]
fn a_root_certificate_that_is_not_one_is_named_before_anything_is_written() {
    let server = pg_server::tls_server();
    let kb = TlsKb::new();
    let bogus = kb.path().join("ca.pem");
    std::fs::write(&bogus, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n").unwrap();
    for root in [bogus.clone(), kb.path().join("missing.pem")] {
        let url = server.tcp_url(
            "localhost",
            &format!("sslmode=verify-full sslrootcert={}", root.display()),
        );
        let out = kb.init(&url);
        let message = stderr(&out);
        assert!(!out.status.success(), "{message}");
        assert!(message.contains(&root.display().to_string()), "{message}");
        assert!(message.contains("PEM file of the CA"), "{message}");
        assert!(!kb.kb().join(".openkb").exists(), "{message}");
    }
}

#[test]
fn sslrootcert_system_trusts_the_system_store_and_only_it() {
    // The system store is found as OpenSSL finds it, SSL_CERT_FILE first: holding the server's
    // CA it verifies the server in full (system's default mode); holding another CA, it refuses.
    let server = pg_server::tls_server();
    let url = server.tcp_url("localhost", "sslrootcert=system");
    let tls = TlsKb::new()
        .with_system_roots(&server.ca())
        .works_over(&url);
    assert!(
        tls.as_str()
            .is_some_and(|t| t.ends_with("(sslmode=verify-full)")),
        "{tls}"
    );
    TlsKb::new()
        .with_system_roots(&server.other_ca())
        .refused(&url, "checked against the system's root certificates");

    let kb = TlsKb::new();
    let empty = kb.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let kb = kb.with_system_roots(&empty);
    let out = kb.init(&url);
    let message = stderr(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("cannot load the system's root certificates"),
        "{message}"
    );
    assert!(!kb.kb().join(".openkb").exists(), "{message}");
}
