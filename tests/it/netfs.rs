//! Network filesystems: writes are refused by default, `OPENKB_NETWORK_FS=single-host` uses
//! the rollback journal and pins it. CI has no NFS, so `OPENKB_FS_TYPE` stands in for
//! `statfs` (the detection itself is unit-tested in src/netfs.rs).

use crate::harness::testkb::*;
use openkb::state::Queries;

fn journal_mode(kb: &TestKb) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(kb.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap()
}

fn pinned(kb: &TestKb) -> Option<String> {
    kb.store().reader().unwrap().meta("journal_mode").unwrap()
}

#[test]
fn network_filesystems_refuse_writes_with_a_clear_message() {
    for fs_type in ["nfs", "cifs", "smb3", "fuse.sshfs", "fuse", "9p"] {
        let kb = TestKb::new();
        kb.add_doc("a.md", "a", true);
        let log_before = kb.store().reader().unwrap().log_count().unwrap();

        // lint always writes (report + log row): refused before anything is written.
        let output = kb
            .cmd()
            .env("OPENKB_FS_TYPE", fs_type)
            .arg("lint")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{fs_type}");
        let err = stderr(&output);
        assert!(
            err.contains(&format!("network filesystem ({fs_type})")),
            "{err}"
        );
        assert!(err.contains("refuses to write"), "{err}");
        assert!(err.contains("OPENKB_NETWORK_FS=single-host"), "{err}");
        assert!(err.contains("local disk"), "{err}");
        assert!(
            !kb.path("wiki/reports").exists(),
            "{fs_type}: no report written"
        );
        assert_eq!(
            kb.store().reader().unwrap().log_count().unwrap(),
            log_before
        );

        // Reading still works; doctor reports the problem.
        kb.cmd()
            .env("OPENKB_FS_TYPE", fs_type)
            .arg("status")
            .assert()
            .success();
        let output = kb
            .cmd()
            .env("OPENKB_FS_TYPE", fs_type)
            .arg("doctor")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(
            stdout(&output).contains("PROBLEM filesystem"),
            "{}",
            stdout(&output)
        );
        assert_eq!(
            journal_mode(&kb),
            "wal",
            "{fs_type}: the file was not switched"
        );
    }
}

#[test]
fn init_on_a_network_filesystem_creates_no_database() {
    let kb = TestKb::new();
    let other = kb.root.parent().unwrap().join("kb-on-nfs");
    let output = kb
        .bare()
        .env("OPENKB_FS_TYPE", "nfs")
        .args(["init", "--kb-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("network filesystem (nfs)"));
    assert!(!other.join(".openkb/state.db").exists());
    assert!(!other.join(".openkb").exists(), "a failed init is undone");
}

#[test]
fn local_filesystems_and_fuseblk_are_not_network() {
    for fs_type in ["ext4", "xfs", "fuseblk"] {
        let kb = TestKb::new();
        kb.add_doc("a.md", "a", true);
        kb.cmd()
            .env("OPENKB_FS_TYPE", fs_type)
            .arg("lint")
            .assert()
            .success();
        assert_eq!(journal_mode(&kb), "wal");
        let (code, json) = doctor_json(&kb, &[]);
        assert_eq!(code, 0, "{json:#}");
    }
}

#[test]
fn single_host_opt_in_uses_the_rollback_journal_and_the_pin_survives_a_local_open() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    assert_eq!(journal_mode(&kb), "wal");

    let output = kb
        .cmd()
        .env("OPENKB_FS_TYPE", "nfs")
        .env("OPENKB_NETWORK_FS", "single-host")
        .arg("lint")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(journal_mode(&kb), "delete");
    assert_eq!(pinned(&kb).as_deref(), Some("delete"));
    assert!(!kb.path(".openkb/state.db-wal").exists());

    // The file server itself sees a local disk and no opt-in: the pin keeps rollback mode.
    kb.cmd()
        .env("OPENKB_FS_TYPE", "ext4")
        .arg("lint")
        .assert()
        .success();
    kb.cmd().arg("lint").assert().success();
    assert_eq!(journal_mode(&kb), "delete");
    let store = kb.store();
    assert!(store.is_rollback_mode());
    assert_eq!(
        store
            .reader()
            .unwrap()
            .last_log_of("lint")
            .unwrap()
            .unwrap()
            .operation,
        "lint"
    );
    drop(store);
    assert_eq!(journal_mode(&kb), "delete");

    // A later process on the network mount without the variable: the pin is the opt-in.
    kb.cmd()
        .env("OPENKB_FS_TYPE", "nfs")
        .arg("lint")
        .assert()
        .success();
    let (code, json) = {
        let output = kb
            .cmd()
            .env("OPENKB_FS_TYPE", "nfs")
            .args(["doctor", "--json"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (output.status.code().unwrap(), json)
    };
    assert_eq!(code, 0, "{json:#}");
    let fs = findings(&json, "filesystem");
    assert_eq!(fs[0].0, "warning");
    assert!(fs[0].1.contains("single-host mode"), "{fs:?}");
    assert_eq!(kb.log_rows("lint"), 4);
}

#[test]
fn an_unknown_opt_in_value_is_an_error() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    let output = kb
        .cmd()
        .env("OPENKB_FS_TYPE", "nfs")
        .env("OPENKB_NETWORK_FS", "yes")
        .arg("lint")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("OPENKB_NETWORK_FS=\"yes\" is not understood"));
    assert_eq!(journal_mode(&kb), "wal");
}

#[test]
fn doctor_fix_leaves_a_damaged_database_in_place_on_a_network_filesystem() {
    let kb = TestKb::new();
    std::fs::write(kb.db(), b"not a database at all, just some text").unwrap();
    let output = kb
        .cmd()
        .env("OPENKB_FS_TYPE", "nfs")
        .args(["doctor", "--fix"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("network filesystem (nfs)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read(kb.db()).unwrap(),
        b"not a database at all, just some text"
    );
    assert!(kb.openkb_files("state.db.corrupt").is_empty());
}

#[test]
fn a_syncthing_folder_is_a_warning_in_doctor_only() {
    let kb = TestKb::new();
    kb.add_doc("a.md", "a", true);
    std::fs::create_dir(kb.path(".stfolder")).unwrap();
    let (code, json) = doctor_json(&kb, &[]);
    assert_eq!(code, 0, "{json:#}");
    let sync = findings(&json, "sync-folder");
    assert_eq!(sync.len(), 1, "{json:#}");
    assert_eq!(sync[0].0, "warning");
    assert!(sync[0].1.contains("Syncthing"), "{}", sync[0].1);
    assert!(
        sync[0].1.contains("exclude .openkb/state.db*"),
        "{}",
        sync[0].1
    );
    // Writes still work there (and stay in WAL mode).
    kb.cmd().arg("lint").assert().success();
    assert_eq!(journal_mode(&kb), "wal");
}
