#!/usr/bin/env bash
# Build openkb and run it on two example knowledge bases, printing every command:
#   1. a new KB fed with examples/docs/ (add, list, status, log, compile hook, remove, doctor, lint);
#   2. examples/legacy-kb/, a KB in the Python tool's format, migrated to state.db and exported
#      back byte for byte.
# Everything happens in a temp folder with its own HOME; nothing outside it is touched.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# Say what is happening: a first release build takes minutes and would otherwise look
# like a hang. cargo reports its own progress on stderr.
echo "== building openkb (release; the first build takes a few minutes, later ones a second)..." >&2
cargo build --release --locked
openkb=$repo/target/release/openkb
echo "== built $openkb" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME=$work/home
mkdir -p "$HOME"
unset OPENKB_DIR OPENKB_LOCK_TIMEOUT

run() {
  printf '\n\033[1m$ openkb %s\033[0m\n' "$*"
  "$openkb" "$@" || printf '(exit code %s)\n' "$?"
}

echo "== a new knowledge base in $work/kb"
run --kb-dir "$work/kb" init --model gpt-5.4 --language en
cd "$work/kb"
run add "$repo/examples/docs"
run list
# A stand-in for an LLM compiler: writes a summary page per document.
cat >>.openkb/config.yaml <<'YAML'
compile_command: 'printf "# %s\n\nA summary of [[sources/%s]].\n" "$OPENKB_DOC_NAME" "$OPENKB_DOC_NAME" > "wiki/summaries/$OPENKB_DOC_NAME.md"'
YAML
run compile --pending
run status
run remove file-locking -y
run log
run doctor
run lint
if command -v sqlite3 >/dev/null 2>&1; then
  printf '\n\033[1m$ sqlite3 .openkb/state.db "SELECT position, doc_name, type, status FROM documents"\033[0m\n'
  sqlite3 -header -column .openkb/state.db "SELECT position, doc_name, type, status FROM documents ORDER BY position"
fi

echo
echo "== a legacy knowledge base (Python tool format) in $work/legacy"
cp -r "$repo/examples/legacy-kb" "$work/legacy"
cd "$work/legacy"
run list
run migrate --dry-run
run migrate
run list
run log --all
run export --legacy-json --output "$work/exported.json"
if cmp -s "$work/exported.json" .openkb/hashes.json.migrated; then
  echo "export --legacy-json reproduces the original hashes.json byte for byte"
else
  echo "export differs from the original hashes.json" >&2
  exit 1
fi
