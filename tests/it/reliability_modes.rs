//! File modes: files openkb rewrites keep their mode; files it creates follow the umask.

use crate::harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::harness::{Env, stderr};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `openkb --kb-dir <kb> args` run by `sh -c 'umask <umask>; exec openkb ...'`.
fn run_with_umask(env: &Env, umask: &str, args: &[&str]) -> Output {
    let out = harness::openkb_with_umask(umask, &env.home(), env.path())
        .arg("--kb-dir")
        .arg(env.kb())
        .args(args)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

#[test]
fn rewritten_files_keep_their_mode() {
    let env = Env::with_kb();
    let kb = env.kb();
    let index = kb.join("wiki/index.md");
    let log = kb.join("wiki/log.md");
    let global = env.path().join("home/.config/openkb/global.yaml");
    set_mode(&index, 0o640);
    set_mode(&log, 0o604);
    set_mode(&global, 0o600);

    // add rewrites index.md and appends to log.md.
    let a = env.write("in/a.md", "# a\n");
    let b = env.write("in/b.md", "# b\n");
    let out = env.cmd().arg("add").arg(&a).arg(&b).output().expect("add");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&index), 0o640, "index.md after add");
    assert_eq!(mode(&log), 0o604, "log.md after add");

    // remove rewrites the pages that link to the document.
    let page = env.write(
        "kb/wiki/concepts/c.md",
        "# c\n\n[[summaries/a]] [[summaries/b]]\n",
    );
    set_mode(&page, 0o600);
    let out = env.run(&["remove", "-y", "a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !std::fs::read_to_string(&page)
            .expect("page")
            .contains("[[summaries/a]]")
    );
    assert_eq!(mode(&page), 0o600, "linking page after remove");
    assert_eq!(mode(&index), 0o640, "index.md after remove");

    // lint --fix rewrites a page with a broken link.
    let broken = env.write(
        "kb/wiki/concepts/d.md",
        "# d\n\n[[concepts/nowhere]] [[concepts/c]]\n",
    );
    set_mode(&broken, 0o640);
    let out = env.run(&["lint", "--fix"]);
    assert!(
        std::fs::read_to_string(&broken)
            .expect("page")
            .contains("nowhere")
    );
    assert!(
        !std::fs::read_to_string(&broken)
            .expect("page")
            .contains("[[concepts/nowhere]]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode(&broken), 0o640, "page after lint --fix");

    // doctor --fix rewrites a log.md that differs from the log table.
    std::fs::write(&log, "# Operations Log\n").expect("log");
    set_mode(&log, 0o604);
    let out = env.run(&["doctor", "--fix"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("ingest | a.md")
    );
    assert_eq!(mode(&log), 0o604, "log.md after doctor --fix");

    // use rewrites global.yaml.
    let other = env.path().join("other");
    let out = env
        .bare(env.path())
        .arg("--kb-dir")
        .arg(&other)
        .args(["init", "-m", "m", "-l", "en"])
        .output()
        .expect("init");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        mode(&global),
        0o600,
        "global.yaml after init registered a KB"
    );
    set_mode(&global, 0o640);
    let out = env.run(&["use", &kb.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&global).expect("g").contains("kb"));
    assert_eq!(mode(&global), 0o640, "global.yaml after use");

    // The config file, rewritten the way every config write does (YamlFile::save).
    let config = kb.join(".openkb/config.yaml");
    set_mode(&config, 0o640);
    let mut file = openkb::config::YamlFile::load(&config).expect("config");
    file.set("language", "fr");
    file.save(&config).expect("save");
    assert_eq!(mode(&config), 0o640, "config.yaml after a rewrite");

    // export -o over an existing file.
    let export = env.path().join("export.json");
    std::fs::write(&export, "old").expect("write");
    set_mode(&export, 0o600);
    let out = env.run(&["export", "--json", "-o", &export.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&export), 0o600, "export target");
}

#[test]
fn new_files_follow_the_umask() {
    for (umask, file_mode, dir_mode) in [("027", 0o640, 0o750), ("077", 0o600, 0o700)] {
        let env = Env::new();
        run_with_umask(&env, umask, &["init", "-m", "m", "-l", "en"]);
        let kb = env.kb();
        let a = env.write("in/a.md", "# a\n");
        let pdf = env.write("in/p.pdf", "%PDF-1.4 not really\n");
        run_with_umask(
            &env,
            umask,
            &["add", &a.to_string_lossy(), &pdf.to_string_lossy()],
        );
        let global = env.path().join("home/.config/openkb/global.yaml");
        for rel in [
            ".openkb/config.yaml",
            ".openkb/state.db",
            "wiki/index.md",
            "wiki/log.md",
            "wiki/AGENTS.md",
            "raw/a.md",
            "raw/p.pdf",
            "wiki/sources/a.md",
        ] {
            assert_eq!(mode(&kb.join(rel)), file_mode, "umask {umask}: {rel}");
        }
        for rel in [".openkb", "raw", "wiki", "wiki/sources", "wiki/summaries"] {
            assert_eq!(mode(&kb.join(rel)), dir_mode, "umask {umask}: {rel}/");
        }
        // global.yaml lists the user's KBs: never more open than the umask allows.
        assert_eq!(mode(&global) & !file_mode, 0, "umask {umask}: global.yaml");
    }
}
