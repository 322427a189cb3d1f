//! Bad input: each case gets a clear error (naming the file and the problem) and changes
//! nothing (the KB's files and state.db rows are compared before and after).

use crate::harness;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::harness::{Env, kb_snapshot, output_bounded, stderr, stdout, tree_snapshot};

/// `openkb` with the env's HOME, no `--kb-dir`, run in `cwd`.
fn bare_cmd(env: &Env, cwd: &Path) -> Command {
    env.bare(cwd)
}

fn assert_fails_naming(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "should fail: {}", stdout(out));
    let err = stderr(out);
    for needle in needles {
        assert!(
            err.contains(needle),
            "error should mention {needle:?}: {err}"
        );
    }
}

#[test]
fn malformed_config_yaml_is_named_and_nothing_changes() {
    let env = Env::with_kb();
    let file = env.write("in/a.md", "# a\n");
    let config = env.kb().join(".openkb/config.yaml");
    std::fs::write(&config, "model: [unclosed\nlanguage: en\n").expect("config");
    let before = kb_snapshot(&env.kb());
    let out = env.cmd().arg("add").arg(&file).output().expect("add");
    assert_fails_naming(&out, &["config.yaml", "invalid YAML", "line"]);
    assert_eq!(kb_snapshot(&env.kb()), before);
}

#[test]
fn malformed_global_yaml_is_named_and_nothing_changes() {
    let env = Env::with_kb();
    let global = env.path().join("home/.config/openkb/global.yaml");
    std::fs::write(&global, "default_kb: [x\n").expect("global");
    let home_before = tree_snapshot(&env.path().join("home"), &[]);
    let before = kb_snapshot(&env.kb());
    // Discovery needs global.yaml when neither --kb-dir nor an enclosing KB names one.
    let out = bare_cmd(&env, env.path())
        .arg("status")
        .output()
        .expect("status");
    assert_fails_naming(&out, &["global.yaml", "invalid YAML"]);
    let out = bare_cmd(&env, env.path())
        .arg("use")
        .arg(env.kb())
        .output()
        .expect("use");
    assert_fails_naming(&out, &["global.yaml", "invalid YAML", "did not change"]);
    let out = bare_cmd(&env, env.path())
        .args(["migrate", "--all"])
        .output()
        .expect("migrate");
    assert_fails_naming(&out, &["global.yaml"]);
    assert_eq!(tree_snapshot(&env.path().join("home"), &[]), home_before);
    assert_eq!(kb_snapshot(&env.kb()), before);
    // With --kb-dir, global.yaml is not needed: the KB still works.
    let out = env.run(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn global_yaml_naming_kbs_that_no_longer_exist() {
    let env = Env::with_kb();
    let gone = env.path().join("gone");
    let global = env.path().join("home/.config/openkb/global.yaml");
    let kb = env.kb().canonicalize().expect("kb");
    std::fs::write(
        &global,
        format!(
            "default_kb: {}\nknown_kbs:\n- {}\n- {}\n",
            gone.display(),
            gone.display(),
            kb.display()
        ),
    )
    .expect("global");
    let before = kb_snapshot(&env.kb());
    // Discovery, from outside any KB, says the default KB is gone (exit 3: no KB).
    let out = bare_cmd(&env, env.path())
        .arg("status")
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&gone.display().to_string())
            && stderr(&out).contains("default_kb")
            && stderr(&out).contains("no longer a knowledge base"),
        "{}",
        stderr(&out)
    );
    // From inside a KB the stale default does not matter.
    let out = bare_cmd(&env, &kb).arg("status").output().expect("status");
    assert!(out.status.success(), "{}", stderr(&out));
    // `use` names the missing folder; global.yaml is untouched.
    let text = std::fs::read_to_string(&global).expect("global");
    let out = bare_cmd(&env, env.path())
        .arg("use")
        .arg(&gone)
        .output()
        .expect("use");
    assert_fails_naming(&out, &["gone", "does not exist"]);
    assert_eq!(std::fs::read_to_string(&global).expect("global"), text);
    // `migrate --all` reports it and goes on with the others.
    let out = bare_cmd(&env, env.path())
        .args(["migrate", "--all"])
        .output()
        .expect("migrate");
    let text_out = stdout(&out);
    assert!(
        text_out.contains(&format!("{}: not a KB anymore", gone.display())),
        "{text_out}"
    );
    assert!(text_out.contains(&kb.display().to_string()), "{text_out}");
    assert_eq!(kb_snapshot(&env.kb()), before);
}

#[test]
fn a_file_name_that_is_not_utf8_is_reported_and_not_added() {
    let env = Env::with_kb();
    let folder = env.path().join("in");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let bad = folder.join(std::ffi::OsStr::from_bytes(b"bad\xff.md"));
    std::fs::write(&bad, "# bad\n").expect("write");
    std::fs::write(folder.join("good.md"), "# good\n").expect("write");
    let out = env.cmd().arg("add").arg(&folder).output().expect("add");
    assert_eq!(out.status.code(), Some(1), "the bad file fails the run");
    assert!(
        stderr(&out).contains("bad\u{fffd}.md") && stderr(&out).contains("not valid UTF-8"),
        "{}",
        stderr(&out)
    );
    let docs = env.docs();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].doc_name.as_deref(), Some("good"));
    let raw: Vec<_> = std::fs::read_dir(env.kb().join("raw"))
        .expect("raw")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(raw, vec![std::ffi::OsString::from("good.md")]);
    harness::assert_consistent(&env);
}

#[test]
fn a_pipe_is_skipped_not_waited_on() {
    let env = Env::with_kb();
    let folder = env.path().join("in");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let fifo = folder.join("pipe.md");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::fs::write(folder.join("ok.md"), "# ok\n").expect("write");
    let before = kb_snapshot(&env.kb());
    // Named on the command line, a pipe would block `add` forever on open.
    let mut cmd = env.cmd();
    cmd.arg("add").arg(&fifo);
    let out = output_bounded(&mut cmd);
    assert!(
        stderr(&out).contains("pipe.md") && stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(kb_snapshot(&env.kb()), before, "nothing changed");
    let mut cmd = env.cmd();
    cmd.arg("add").arg(&folder);
    let out = output_bounded(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.docs().len(), 1);
}

/// A large file truncated by another thread while `add` reads it: it is either registered with
/// the content of its published raw copy, or reported as failed; never registered with a hash
/// its raw copy does not have.
#[test]
fn a_file_that_shrinks_while_it_is_hashed() {
    use sha2::Digest;
    const SIZE: usize = 9 << 20; // above the 4 MiB read-at-once limit: streamed twice
    const TRIALS: usize = 6;
    let env = Env::with_kb();
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    // Truncations are spread over the measured duration of an untouched add of such a file,
    // so that some land while it is being hashed or copied.
    let full = {
        let file = env.path().join("in/full.pdf");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, &data).expect("write");
        let started = Instant::now();
        let out = env.cmd().arg("add").arg(&file).output().expect("add");
        assert!(out.status.success(), "{}", stderr(&out));
        started.elapsed()
    };
    let mut outcomes = Vec::new();
    let (mut whole, mut short, mut refused) = (0, 0, 0);
    for trial in 1..=TRIALS {
        let delay = full.mul_f64(trial as f64 / (TRIALS + 1) as f64);
        let file = env.path().join(format!("in/big{trial}.pdf"));
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        let mut bytes = data.clone();
        bytes[0] = trial as u8; // distinct content per trial
        std::fs::write(&file, &bytes).expect("write");
        let truncater = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let f = std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .expect("open");
                f.set_len((SIZE / 3) as u64).expect("truncate");
            })
        };
        let out = env.cmd().arg("add").arg(&file).output().expect("add");
        truncater.join().expect("truncater");
        let doc = env.doc_named(&format!("big{trial}"));
        match doc {
            Some(doc) => {
                assert!(out.status.success(), "{}", stderr(&out));
                let raw = std::fs::read(env.kb().join(doc.raw_path.expect("raw"))).expect("raw");
                assert_eq!(
                    format!("{:x}", sha2::Sha256::digest(&raw)),
                    doc.hash,
                    "trial {trial}: registered hash vs published copy"
                );
                assert!(raw.len() == SIZE || raw.len() == SIZE / 3);
                if raw.len() == SIZE {
                    whole += 1;
                } else {
                    short += 1;
                }
                outcomes.push(format!("{delay:?}: added {} bytes", raw.len()));
            }
            None => {
                assert_eq!(out.status.code(), Some(1));
                assert!(
                    stderr(&out).contains(&format!("big{trial}.pdf"))
                        && stderr(&out).contains("changed while it was being read"),
                    "{}",
                    stderr(&out)
                );
                refused += 1;
                outcomes.push(format!("{delay:?}: reported as changed"));
            }
        }
        harness::assert_consistent(&env);
    }
    eprintln!(
        "shrinking file ({full:?} untouched): {whole} added whole, {short} added truncated, \
         {refused} reported as changed: {outcomes:?}"
    );
}

#[test]
fn unreadable_files_are_reported_and_the_rest_added() {
    let env = Env::with_kb();
    let folder = env.path().join("in");
    env.write("in/secret.md", "# secret\n");
    env.write("in/open.md", "# open\n");
    // An injected EACCES where add reads the file: root reads through mode 000, so a real one
    // would mean something else as root (CI) than as a user.
    let out = env
        .cmd()
        .arg("add")
        .arg(&folder)
        .env("OPENKB_TEST_IO_FAULT", "read:EACCES:in/secret.md")
        .output()
        .expect("add");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("secret.md") && stderr(&out).contains("ermission denied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.docs().len(), 1);
    harness::assert_consistent(&env);
}

#[test]
fn a_symlink_loop_in_a_folder_add_terminates() {
    let env = Env::with_kb();
    let folder = env.path().join("in");
    env.write("in/sub/real.md", "# real\n");
    std::os::unix::fs::symlink("..", folder.join("sub/up")).expect("dir loop");
    std::os::unix::fs::symlink("b.md", folder.join("a.md")).expect("link");
    std::os::unix::fs::symlink("a.md", folder.join("b.md")).expect("link");
    let mut cmd = env.cmd();
    cmd.arg("add").arg(&folder);
    let out = output_bounded(&mut cmd);
    assert!(out.status.code().is_some(), "exited");
    assert_eq!(env.docs().len(), 1, "{}{}", stdout(&out), stderr(&out));
    // The file loop, named directly: an error naming it, nothing added.
    let before = kb_snapshot(&env.kb());
    let mut cmd = env.cmd();
    cmd.arg("add").arg(folder.join("a.md"));
    let out = output_bounded(&mut cmd);
    assert_fails_naming(&out, &["a.md"]);
    assert_eq!(kb_snapshot(&env.kb()), before);
    harness::assert_consistent(&env);
}

#[test]
fn a_read_only_kb_refuses_writes_clearly_and_reads_work() {
    let env = Env::with_kb();
    let file = env.write("in/a.md", "# a\n");
    let out = env.cmd().arg("add").arg(&file).output().expect("add");
    assert!(out.status.success());
    let file2 = env.write("in/b.md", "# b\n");
    let before = kb_snapshot(&env.kb());
    // A read-only mount: the same for root (which writes through modes) and for a user.
    let add = env.run_on_read_only_mount(&["add", file2.to_str().expect("utf-8")]);
    let remove = env.run_on_read_only_mount(&["remove", "-y", "a"]);
    let list = env.run_on_read_only_mount(&["list"]);
    let after = kb_snapshot(&env.kb());
    assert!(!add.status.success(), "add: {}", stdout(&add));
    assert!(
        stderr(&add).contains(&env.kb().canonicalize().expect("kb").display().to_string())
            && stderr(&add).contains("Read-only file system"),
        "add: {}",
        stderr(&add)
    );
    assert!(!remove.status.success(), "remove: {}", stdout(&remove));
    assert!(list.status.success(), "list: {}", stderr(&list));
    assert!(stdout(&list).contains("a.md"));
    assert_eq!(after, before, "nothing changed");
}

#[test]
fn a_state_db_that_is_not_a_database() {
    let env = Env::with_kb();
    let file = env.write("in/a.md", "# a\n");
    let db = env.kb().join(".openkb/state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(env.kb().join(format!(".openkb/state.db{suffix}")));
    }
    std::fs::write(&db, "this is not a database, it is a note\n".repeat(200)).expect("write");
    let before = tree_snapshot(&env.kb(), &[".openkb/ingest.lock"]);
    for args in [vec!["status"], vec!["list"], vec!["log"]] {
        let out = env.run(&args);
        assert_fails_naming(&out, &["state.db"]);
        assert!(
            stderr(&out).contains("doctor"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = env.cmd().arg("add").arg(&file).output().expect("add");
    assert_fails_naming(&out, &["state.db"]);
    let out = env.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("state.db"), "{}", stdout(&out));
    assert_eq!(
        tree_snapshot(&env.kb(), &[".openkb/ingest.lock"]),
        before,
        "nothing changed"
    );
}

#[test]
fn a_state_db_from_a_newer_schema_reads_but_refuses_writes() {
    let env = Env::with_kb();
    let file = env.write("in/a.md", "# a\n");
    let out = env.cmd().arg("add").arg(&file).output().expect("add");
    assert!(out.status.success());
    {
        let conn = rusqlite::Connection::open(env.kb().join(".openkb/state.db")).expect("db");
        conn.execute_batch("PRAGMA user_version = 999; PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("bump");
    }
    let file2 = env.write("in/b.md", "# b\n");
    let before = kb_snapshot(&env.kb());
    let out = env.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("a.md"));
    let out = env.run(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cmd().arg("add").arg(&file2).output().expect("add");
    assert_fails_naming(&out, &["state.db", "999"]);
    let out = env.run(&["remove", "-y", "a"]);
    assert_fails_naming(&out, &["state.db"]);
    assert_eq!(kb_snapshot(&env.kb()), before, "nothing changed");
}

#[test]
fn kb_dir_pointing_at_a_file() {
    let env = Env::new();
    let file = env.write("kb", "not a folder\n");
    for args in [vec!["status"], vec!["list"], vec!["doctor"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is a file, not a folder"),
            "{}",
            stderr(&out)
        );
    }
    let out = env.run(&["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kb"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        "not a folder\n"
    );
}
