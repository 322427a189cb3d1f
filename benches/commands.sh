#!/usr/bin/env bash
# Whole-command benchmarks of openkb on this machine. Builds the release binary, builds the
# KBs, runs everything and prints a Markdown table (the one in the README).
#
#   bash benches/commands.sh            # everything (a few minutes)
#   N=20000 bash benches/commands.sh    # smaller registry
#
# Needs python3 (to generate a legacy hashes.json) and hyperfine (installed from Debian's
# packages when missing and when running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
FILES=${FILES:-10000}
cargo build --release --quiet
BIN=$PWD/target/release/openkb
if ! command -v hyperfine >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq hyperfine) >/dev/null
  else
    echo "hyperfine is needed: apt-get install hyperfine" >&2
    exit 1
  fi
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HOME=$WORK/home
mkdir -p "$HOME"
unset OPENKB_DIR OPENKB_LOCK_TIMEOUT
ROWS=()
row() { ROWS+=("| $1 | $2 |"); }
ms() { python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['results'][0]; print(f\"{d['median']*1000:.1f} ms (mean {d['mean']*1000:.1f} ± {d['stddev']*1000:.1f})\")" "$1"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f} s')" "$1" "$(now)"; }

# --- a legacy KB with an N-entry 0.4-format hashes.json ---------------------------------------
LEGACY=$WORK/legacy
mkdir -p "$LEGACY/.openkb" "$LEGACY/raw" "$LEGACY/wiki"
python3 - "$LEGACY" "$N" <<'PY'
import hashlib, json, sys
kb, n = sys.argv[1], int(sys.argv[2])
data = {}
for i in range(n):
    key = hashlib.sha256(f"doc-{i}".encode()).hexdigest()
    stem = f"doc-{i:06d}"
    data[key] = {"name": f"{stem}.md", "doc_name": stem, "type": "md",
                 "path": f"inbox/{stem}.md", "raw_path": f"raw/{stem}.md",
                 "source_path": f"wiki/sources/{stem}.md"}
with open(f"{kb}/.openkb/hashes.json", "w") as f:
    f.write(json.dumps(data, indent=2, ensure_ascii=True) + "\n")
with open(f"{kb}/wiki/log.md", "w") as f:
    f.write("# Operations Log\n\n")
    for i in range(n):
        f.write(f"## [2026-01-01 00:00:00] ingest | doc-{i:06d}.md\n\n")
PY
printf 'language: en\nmodel: gpt-5.4\npageindex_threshold: 20\n' > "$LEGACY/.openkb/config.yaml"
cp -r "$LEGACY" "$WORK/legacy-copy"
t=$(now)
"$BIN" --kb-dir "$LEGACY" migrate >/dev/null
row "\`openkb migrate\` of a $N-entry hashes.json (+ $N log entries)" "$(since "$t")"

# --- cold commands on the migrated KB ---------------------------------------------------------
cd "$LEGACY"
hyperfine -N --warmup 3 --runs 30 --export-json "$WORK/status.json" "$BIN status" >/dev/null 2>&1
row "\`openkb status\` ($N documents)" "$(ms "$WORK/status.json")"
hyperfine -N --warmup 2 --runs 10 --output=null --export-json "$WORK/list.json" "$BIN list --json" >/dev/null 2>&1
row "\`openkb list --json\` ($N documents)" "$(ms "$WORK/list.json")"
RSS=$(/usr/bin/time -f %M "$BIN" list --json 2>&1 >/dev/null | tail -1)
row "\`openkb list --json\` peak memory" "$((RSS / 1024)) MiB"
hyperfine -N --warmup 3 --runs 30 --export-json "$WORK/log.json" "$BIN log -n 20" >/dev/null 2>&1
row "\`openkb log -n 20\` ($N entries)" "$(ms "$WORK/log.json")"
cd - >/dev/null

# --- add a folder of small text files ---------------------------------------------------------
"$BIN" --kb-dir "$WORK/adds" init >/dev/null
mkdir -p "$WORK/inbox"
python3 - "$WORK/inbox" "$FILES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"note-{i:05d}.md"), "w") as f:
        f.write(f"# Note {i}\n\nSome text about topic {i % 97} and {i * 7919 % 1000}.\n")
PY
t=$(now)
"$BIN" --kb-dir "$WORK/adds" add "$WORK/inbox" >/dev/null 2>&1
row "\`openkb add\` of a folder of $FILES small text files" "$(since "$t")"

# --- 4 concurrent adders of 500 files each ----------------------------------------------------
"$BIN" --kb-dir "$WORK/conc" init >/dev/null
for p in 1 2 3 4; do
  mkdir -p "$WORK/c$p"
  for i in $(seq 1 500); do echo "adder $p file $i" > "$WORK/c$p/f-$p-$i.md"; done
done
t=$(now)
pids=()
for p in 1 2 3 4; do
  "$BIN" --kb-dir "$WORK/conc" add "$WORK/c$p" >"$WORK/c$p.out" 2>&1 & pids+=($!)
done
fails=0
for pid in "${pids[@]}"; do wait "$pid" || fails=$((fails + 1)); done
elapsed=$(since "$t")
registered=$("$BIN" --kb-dir "$WORK/conc" list --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['documents']))")
busy=$(cat "$WORK"/c?.out | grep -ci "busy" || true)
row "4 concurrent \`openkb add\` x 500 files" "$elapsed; $registered/2000 registered, $fails failed, $busy busy errors"

echo
echo "| what | measured |"
echo "| --- | --- |"
printf '%s\n' "${ROWS[@]}"
