//! Load: 8 `openkb` processes at once doing mixed add / remove / list / status / log on one KB.
//! Afterwards every document an add reported as added and no remove removed is registered
//! exactly once with its files, the log has exactly one row per reported ingest and remove,
//! and the database is intact.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use crate::harness::{Env, assert_consistent, stderr, stdout};

const PROCESSES: usize = 8;
const OPS_PER_PROCESS: usize = 20;

/// A tiny deterministic generator (xorshift64*): the same seed gives the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What one process's operations reported.
#[derive(Default)]
struct Tally {
    /// doc_name -> how many adds reported it added.
    added: BTreeMap<String, i64>,
    /// doc_name -> how many removes reported it removed.
    removed: BTreeMap<String, i64>,
    ops: usize,
    failures: Vec<String>,
}

fn files_for(env: &Env, p: usize) {
    for j in 0..10 {
        // Files 0..3 have the same content in every process's folder, so processes race to
        // register the same bytes under different paths: exactly one may win each time.
        let text = if j < 3 {
            format!("# shared {j}\n")
        } else {
            format!("# p{p} file {j}\n")
        };
        env.write(&format!("in/p{p}/f{j:02}.md"), &text);
    }
    for j in 0..3 {
        env.write(
            &format!("in/p{p}/batch/b{j}.md"),
            &format!("# p{p} batch {j}\n"),
        );
    }
}

fn parse_added(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("added "))
        .filter(|l| l.contains(" as "))
        .filter_map(|l| {
            let rest = l.rsplit_once(" as ")?.1;
            Some(rest.split(" (").next()?.to_owned())
        })
        .collect()
}

fn worker(env: &Env, p: usize, barrier: &Barrier) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((p as u64 + 1) * 0x1000_0001));
    let mut tally = Tally::default();
    let mut mine: Vec<String> = Vec::new();
    barrier.wait();
    for _ in 0..OPS_PER_PROCESS {
        let choice = rng.below(10);
        let mut removing = None;
        let out = match choice {
            0..=3 => {
                let j = rng.below(10);
                let file = env.path().join(format!("in/p{p}/f{j:02}.md"));
                env.cmd().arg("add").arg(file).output().expect("add")
            }
            4 => {
                let dir = env.path().join(format!("in/p{p}/batch"));
                env.cmd().arg("add").arg(dir).output().expect("add")
            }
            5 | 6 if !mine.is_empty() => {
                let name = mine.remove(rng.below(mine.len()));
                removing = Some(name.clone());
                env.cmd()
                    .args(["remove", "-y", &name])
                    .output()
                    .expect("remove")
            }
            5 | 7 => env.run(&["list", "--json"]),
            6 | 8 => env.run(&["status"]),
            _ => env.run(&["log"]),
        };
        tally.ops += 1;
        let text = stdout(&out);
        let reported = parse_added(&text);
        for name in &reported {
            *tally.added.entry(name.clone()).or_default() += 1;
            mine.push(name.clone());
        }
        // `removed <file name>` is printed once the document is gone; it was named by its
        // doc_name here (the file name may be shared by several documents).
        if let Some(name) = removing
            && text.lines().any(|l| l.starts_with("removed "))
        {
            *tally.removed.entry(name).or_default() += 1;
        }
        if !out.status.success() {
            tally.failures.push(format!(
                "p{p} op {choice}: {:?}\n{}{}",
                out.status,
                text,
                stderr(&out)
            ));
        }
    }
    tally
}

#[test]
fn eight_processes_of_mixed_operations_keep_every_promise() {
    let env = Arc::new(Env::with_kb());
    for p in 0..PROCESSES {
        files_for(&env, p);
    }
    let barrier = Arc::new(Barrier::new(PROCESSES));
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let env = Arc::clone(&env);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || worker(&env, p, &barrier))
        })
        .collect();
    let tallies: Vec<Tally> = handles
        .into_iter()
        .map(|h| h.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed();

    let mut added: BTreeMap<String, i64> = BTreeMap::new();
    let mut removed: BTreeMap<String, i64> = BTreeMap::new();
    let mut ops = 0;
    for t in &tallies {
        assert!(
            t.failures.is_empty(),
            "failed operations:\n{:#?}",
            t.failures
        );
        ops += t.ops;
        for (k, v) in &t.added {
            *added.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &t.removed {
            *removed.entry(k.clone()).or_default() += v;
        }
    }
    let total_added: i64 = added.values().sum();
    let total_removed: i64 = removed.values().sum();
    eprintln!(
        "{PROCESSES} processes, {ops} operations in {elapsed:?}: {total_added} added, \
         {total_removed} removed"
    );
    assert!(total_added > 20, "the run should add a fair number");
    assert!(total_removed > 0, "the run should remove some");

    let docs = env.docs();
    let mut registered: BTreeMap<String, i64> = BTreeMap::new();
    for doc in &docs {
        *registered
            .entry(doc.doc_name.clone().expect("doc_name"))
            .or_default() += 1;
    }
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (name, n) in &added {
        let net = n - removed.get(name).copied().unwrap_or(0);
        assert!(
            (0..=1).contains(&net),
            "{name}: added {n} times, removed fewer/more than possible"
        );
        if net == 1 {
            expected.insert(name.clone(), 1);
        }
    }
    for name in removed.keys() {
        assert!(added.contains_key(name), "{name} removed but never added");
    }
    assert_eq!(
        registered, expected,
        "registered documents vs reported adds minus removes"
    );
    // Every registered document's content is a unique hash and its raw copy has those bytes.
    for doc in &docs {
        let raw = env.kb().join(doc.raw_path.as_deref().expect("raw_path"));
        let bytes = std::fs::read(&raw).expect("raw copy");
        use sha2::Digest;
        let hash = format!("{:x}", sha2::Sha256::digest(&bytes));
        assert_eq!(hash, doc.hash, "{}", raw.display());
    }

    let conn = rusqlite::Connection::open(env.kb().join(".openkb/state.db")).expect("sqlite");
    let count = |op: &str| -> i64 {
        conn.query_row("SELECT count(*) FROM log WHERE operation = ?1", [op], |r| {
            r.get(0)
        })
        .expect("count")
    };
    assert_eq!(
        count("ingest"),
        total_added,
        "one ingest row per reported add"
    );
    assert_eq!(
        count("remove"),
        total_removed,
        "one remove row per reported remove"
    );
    // wiki/log.md mirrors the table: one line per row.
    let log_md = std::fs::read_to_string(env.kb().join("wiki/log.md")).expect("log.md");
    assert_eq!(
        log_md.matches("ingest | ").count() as i64,
        total_added,
        "{log_md}"
    );
    assert_eq!(log_md.matches("remove | ").count() as i64, total_removed);
    assert_consistent(&env);
    let out = env.run(&["doctor", "--full"]);
    assert!(
        out.status.success(),
        "doctor: {}{}",
        stdout(&out),
        stderr(&out)
    );
}
