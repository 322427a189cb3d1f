//! `openkb export`: the legacy hashes.json round trip and the JSON state export.

use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

#[test]
fn legacy_json_to_a_file_is_the_original_registry() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let original = std::fs::read(kb.join(".openkb/hashes.json")).unwrap();
    ok(&mut sb.openkb(&kb, &["migrate"]));

    // export -o refuses a missing folder (tests/cli_ux.rs): the folder exists here.
    std::fs::create_dir(sb.path().join("out")).unwrap();
    let target = sb.path().join("out/hashes.json");
    let out = ok(sb
        .openkb(&kb, &["export", "--legacy-json", "--output"])
        .arg(&target));
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("wrote 50 document(s)"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), original);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_ne!(mode & 0o044, 0, "not a private 0600 file: {mode:o}");
    assert!(
        names_starting_with(&sb.path().join("out"), ".").is_empty(),
        "no temp file left"
    );

    // Exporting over an existing file replaces it whole.
    std::fs::write(&target, "old").unwrap();
    ok(sb
        .openkb(&kb, &["export", "--legacy-json", "-o"])
        .arg(&target));
    assert_eq!(std::fs::read(&target).unwrap(), original);
}

#[test]
fn a_python_tool_round_trip_through_export_is_exact() {
    // Export, put the file back as hashes.json of a fresh copy, migrate that: same registry.
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let exported = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"])).stdout_bytes;
    let back = sb.legacy_kb("back", &exported, None);
    ok(&mut sb.openkb(&back, &["migrate"]));
    let again = ok(&mut sb.openkb(&back, &["export", "--legacy-json"])).stdout_bytes;
    assert_eq!(again, exported);
}

#[test]
fn json_export_holds_documents_log_and_imports() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    ok(&mut sb.openkb(&kb, &["migrate"]));
    let state = json(&ok(&mut sb.openkb(&kb, &["export", "--json"])));
    assert_eq!(state["format"], "openkb-export");
    assert_eq!(state["format_version"], 1);
    assert_eq!(
        state["schema_version"],
        openkb::state::schema::latest_version()
    );
    assert_eq!(
        state["knowledge_base"],
        kb.canonicalize().unwrap().display().to_string()
    );
    let docs = state["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 50);
    assert_eq!(docs[0]["name"], "doc-001-shard.md");
    assert_eq!(docs[0]["position"], 1);
    let long = docs.iter().find(|d| d["type"] == "long_pdf").unwrap();
    assert!(long["doc_id"].is_string());
    let cloud = docs.iter().find(|d| d["origin"] == "cloud").unwrap();
    assert_eq!(cloud["type"], "pageindex_cloud");
    let log = state["log"].as_array().unwrap();
    assert_eq!(log.len(), 58);
    assert_eq!(log[0]["operation"], "ingest");
    assert_eq!(state["imports"].as_array().unwrap().len(), 1);

    let target = sb.path().join("state.json");
    ok(sb
        .openkb(&kb, &["export", "--json", "--output"])
        .arg(&target));
    let from_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(from_file["documents"], state["documents"]);
}

#[test]
fn export_needs_a_format_and_a_migrated_kb() {
    let sb = Env::new();
    let kb = sb.fixture_kb("kb");
    let out = run(&mut sb.openkb(&kb, &["export"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(&mut sb.openkb(&kb, &["export", "--json", "--legacy-json"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = run(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(out.code, 3, "a legacy KB is refused: {}", out.stderr);
    assert!(out.stderr.contains("openkb migrate"), "{}", out.stderr);
}

#[test]
fn a_fresh_kb_exports_an_empty_registry() {
    let sb = Env::new();
    let kb = sb.path().join("new");
    ok(&mut sb.openkb(&kb, &["init"]));
    let out = ok(&mut sb.openkb(&kb, &["export", "--legacy-json"]));
    assert_eq!(out.stdout, "{}\n");
}
