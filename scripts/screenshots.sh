#!/usr/bin/env bash
# Regenerates screenshots/<tab>.png (and the 1280x800 variants) by running the real app under Xvfb
# with its `--screenshot` mode. Needs: apt-get install -y xvfb xauth libgl1-mesa-dri libgl1
# libglx-mesa0 libegl1 libegl-mesa0 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin pricer-studio --bin pricer
# A larger synthetic demo than the default, so that the original recipe's cap bites on the
# Sampling tab (its crowded slots hold more than 1200 items).
lines=${DEMO_LINES:-150000}
for tab in dataset charts sampling; do
  xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
    --tab "$tab" --demo-lines "$lines" --size 1440x900 --screenshot "screenshots/$tab.png"
done
for tab in dataset sampling; do
  xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
    --tab "$tab" --size 1280x800 --screenshot "screenshots/${tab}-1280x800.png"
done
# The column-mapping dialog of a user's table: the demo's raw lines rewritten as a shop's CSV.
tmp=$(mktemp -d)
./target/release/pricer demo --items 2000 --out "$tmp/raw.jsonl"
python3 tools/raw_to_csv.py "$tmp/raw.jsonl" "$tmp/shop.csv"
xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
  --size 1440x900 --screenshot screenshots/mapping.png "$tmp/shop.csv"
rm -rf "$tmp"
# The Fine-tune tab shows the runs in RUNS_DIR (default runs/, where `pricer train` puts them):
# train one first, e.g. `pricer train --config run.toml` (README "Fine-tuning"), and evaluate it.
xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
  --tab finetune --runs-dir "${RUNS_DIR:-runs}" --size 1440x1150 --screenshot screenshots/finetune.png
# The Compare tab shows a pricer set: scripts/measure-pricers.sh writes one of every local pricer on
# the held-out real items (with RUN=… and IMPORT=… for a checkpoint and an imported file).
set_file=${PRICER_SET:-target/measure-pricers/pricers.set.json}
if [ -f "$set_file" ]; then
  xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
    --tab compare --pricer-set "$set_file" --size 1600x1000 --screenshot screenshots/compare.png
  xvfb-run -a -s "-screen 0 2000x1200x24" ./target/release/pricer-studio \
    --tab compare --pricer-set "$set_file" --select-item "${SELECT_ITEM:-3}" --size 1600x1000 \
    --screenshot screenshots/compare-selected.png
else
  echo "no pricer set at $set_file: run scripts/measure-pricers.sh first for the Compare tab" >&2
fi
