#!/usr/bin/env bash
# Every local pricer on the 250 held-out real items (tools/holdout_split.py: items of the original
# benchmark's distribution), fitted on the rest of ../shared/data/real, in one run; then the
# comparison table with bootstrap intervals, and a pricer set for the Compare tab
# (OUT_DIR/pricers.set.json). Chat pricers need an endpoint: set CHAT=MODEL@BASE_URL (and
# API_KEY_ENV) to add them; RUN=RUN_DIR adds a fine-tuned checkpoint (the latest), IMPORT=FILE a
# file of guesses (columns `index` and `guess`). Usage: scripts/measure-pricers.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/measure-pricers}
mkdir -p "$out"
python3 tools/holdout_split.py ../shared/data/real/curated_items.jsonl "$out"
bin=target/release/pricer
[ -x "$bin" ] || cargo build --release --bin pricer
export PRICER_CACHE_DIR=${PRICER_CACHE_DIR:-$out/cache}
evals=()
for p in random constant features-lr bow-lr word2vec-lr word2vec-svr word2vec-rf embed-knn embed-rf; do
  "$bin" price --pricer "$p" --train "$out/train.jsonl" --test "$out/test.jsonl" --size 250 \
    --out "$out/$p.json" 2> "$out/$p.log"
  tail -1 "$out/$p.log" >&2
  evals+=("$out/$p.json")
done
if [ -n "${CHAT:-}" ]; then
  key=(); [ -n "${API_KEY_ENV:-}" ] && key=(--api-key-env "$API_KEY_ENV")
  "$bin" price --pricer "chat:$CHAT" "${key[@]}" --test "$out/test.jsonl" --out "$out/chat.json"
  "$bin" price --pricer "chat:$CHAT" "${key[@]}" --rag 5 --train "$out/train.jsonl" --test "$out/test.jsonl" --out "$out/chat-rag.json"
  evals+=("$out/chat.json" "$out/chat-rag.json")
fi
if [ -n "${RUN:-}" ]; then
  "$bin" price --pricer "run:$RUN" --test "$out/test.jsonl" --size 250 --out "$out/run.json" 2> "$out/run.log"
  tail -1 "$out/run.log" >&2
  evals+=("$out/run.json")
fi
if [ -n "${IMPORT:-}" ]; then
  "$bin" price --pricer "import:$IMPORT" --guess-column guess --index-column index --test "$out/test.jsonl" \
    --size 250 --out "$out/import.json"
  evals+=("$out/import.json")
fi
"$bin" compare "${evals[@]}" --by category --csv "$out/all-items.csv" --intervals --save-set "$out/pricers.set.json"
