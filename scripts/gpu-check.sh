#!/usr/bin/env bash
# Issue 13's device check, for a lent GPU machine (about 5 minutes on an H200). Prepared here,
# carried there in one folder (default .gpu/, git-ignored), run from the repository root:
#
#   scripts/gpu-check.sh --pack          # here: builds and packs .gpu/ (needs the CUDA toolkit:
#                                        # eval "$(scripts/cuda-setup.sh)" first)
#   scripts/gpu-check.sh                 # there: runs everything, writes $OUT (default /tmp/gpu-out)
#
# What it does there: the GPU integration tests (tests/it/gpu.rs), then for random-weight models
# of the shapes of SmolLM2-135M, Llama-3.2-1B and Llama-3.1-8B (tools/gpu_bench.py make) a short
# `pricer train` and the same training in PyTorch + PEFT, each with its peak GPU memory (polled
# with nvidia-smi) and tokens/s, and MFU against the measured bf16 matrix rate. Results:
# $OUT/gpu-check.md (the table) and $OUT/gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
G=${GPU_DIR:-.gpu}

if [ "${1:-}" = "--pack" ]; then
  set -e
  : "${CUDA_HOME:?run eval \"\$(scripts/cuda-setup.sh)\" first}"
  mkdir -p "$G"
  grep -qx "/$G/" .git/info/exclude 2>/dev/null || echo "/$G/" >> .git/info/exclude
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
  cargo build --locked --release --no-default-features --features cuda --bin pricer
  it=$(cargo test --locked --release --no-default-features --features cuda --test it --no-run --message-format=json |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  strip -o "$G/pricer" "$CARGO_TARGET_DIR/release/pricer"
  strip -o "$G/it" "$it"
  xz -T0 -6 -f "$G/pricer" "$G/it"
  du -sh "$G"/*
  exit 0
fi

OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# The box's own CUDA 13 libraries (PyTorch's wheels), never the build's stub libcuda.
libs=$(python3 - <<'PY'
import glob, os, site
dirs = set()
for root in site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]:
    for name in ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13", "libcudart.so.13"):
        for p in glob.glob(os.path.join(root, "**", name), recursive=True):
            dirs.add(os.path.dirname(p))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
bin=/tmp/pricer-gpu
mkdir -p $bin
for b in pricer it; do xz -dc "$G/$b.xz" > "$bin/$b" && chmod +x "$bin/$b"; done
ldd "$bin/pricer" | grep -E 'cuda|cublas|curand|nvrtc|not found'

# 1. The GPU tests (on demo items; nothing of ../shared travels).
timeout 120 "$bin/it" gpu:: --test-threads 1 --nocapture || echo "GPU TESTS FAILED rc=$?"

# The prompts both trainers see: curated synthetic demo items (the same file for both).
items=/tmp/gpu-items.jsonl
"$bin/pricer" demo --items 6000 --out /tmp/gpu-demo.jsonl && "$bin/pricer" curate /tmp/gpu-demo.jsonl --out $items
wc -l $items

# 2. Models, made once (bf16 safetensors).
M=/tmp/gpu-models
timeout 240 python3 tools/gpu_bench.py make --out $M || echo "MAKE FAILED rc=$?"
python3 tools/gpu_bench.py matmul | tee "$OUT/matmul.json"

poll() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$1" & echo $!; }
peak() { sort -n "$1" | tail -1; }
base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
echo "| model | framework | tokens/s | peak GPU MiB (nvidia-smi) | MFU | loss first→last |" > "$OUT/gpu-check.md"
echo "| --- | --- | --- | --- | --- | --- |" >> "$OUT/gpu-check.md"
tflops=$(python3 -c "import json;print(json.load(open('$OUT/matmul.json'))['bf16_matmul_tflops'])")
for shape in smollm2-135m llama-1b llama-8b; do
  [ -d "$M/$shape" ] || continue
  steps=12; [ $shape = llama-8b ] && steps=8
  seq=182
  flops=$(python3 tools/gpu_bench.py flops --shape $shape --seq 160)
  # pricer
  cat > /tmp/$shape.toml <<EOF
model = "$M/$shape"
train = "$items"
runs_dir = "/tmp/gpu-runs"
name = "$shape"
device = "cuda"
max_steps = $steps
batch_size = 4
max_seq_len = $seq
val_items = 8
val_price_items = 0
eval_every = 0
save_every = 0
log_every = 1
[lora]
r = 32
alpha = 64.0
dropout = 0.1
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
EOF
  p=$(poll /tmp/mem-pricer-$shape)
  timeout 240 "$bin/pricer" train --config /tmp/$shape.toml > /tmp/pricer-$shape.log 2>&1; rc=$?
  kill $p; tail -5 /tmp/pricer-$shape.log
  cp /tmp/gpu-runs/$shape/train.log "$OUT/pricer-$shape.train.log" 2>/dev/null
  row=$(python3 - "$shape" /tmp/gpu-runs/$shape/metrics.jsonl "$flops" "$tflops" "$(peak /tmp/mem-pricer-$shape)" "$base" "$rc" <<'PY'
import json, statistics, sys
shape, path, flops, tflops, peak, base, rc = sys.argv[1:]
try:
    rows = [json.loads(l) for l in open(path)]
except OSError:
    rows = []
train = [r for r in rows if r.get("train_loss") is not None]
rates = [r["tokens_per_s"] for r in train[2:] if r.get("tokens_per_s")]
if not rates:
    print(f"| {shape} | pricer (candle) | failed rc={rc} | {int(peak) - int(base)} | | |"); sys.exit()
tps = statistics.median(rates)
mfu = tps * float(flops) / (float(tflops) * 1e12) * 100
print(f"| {shape} | pricer (candle) | {tps:.0f} | {int(peak) - int(base)} | {mfu:.1f}% | "
      f"{train[0]['train_loss']:.3f}→{train[-1]['train_loss']:.3f} |")
PY
)
  echo "$row" | tee -a "$OUT/gpu-check.md"
  # PyTorch + PEFT
  p=$(poll /tmp/mem-torch-$shape)
  timeout 240 python3 tools/gpu_bench.py torch --model "$M/$shape" --items "$items" --steps $((steps - 2)) \
    > /tmp/torch-$shape.json 2> /tmp/torch-$shape.err; rc=$?
  kill $p; tail -3 /tmp/torch-$shape.err
  row=$(python3 - "$shape" /tmp/torch-$shape.json "$flops" "$tflops" "$(peak /tmp/mem-torch-$shape)" "$base" "$rc" <<'PY'
import json, sys
shape, path, flops, tflops, peak, base, rc = sys.argv[1:]
try:
    r = json.loads(open(path).read().strip().splitlines()[-1])
except (OSError, IndexError, ValueError):
    print(f"| {shape} | pytorch + peft | failed rc={rc} | {int(peak) - int(base)} | | |"); sys.exit()
mfu = r["tokens_per_s"] * float(flops) / (float(tflops) * 1e12) * 100
print(f"| {shape} | {r['framework']} | {r['tokens_per_s']:.0f} | {int(peak) - int(base)} "
      f"(torch max allocated {r['peak_allocated_mib']}) | {mfu:.1f}% | {r['first_loss']:.3f}→{r['last_loss']:.3f} |")
PY
)
  echo "$row" | tee -a "$OUT/gpu-check.md"
done
echo "bf16 matmul: $tflops TFLOP/s; whole check $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu-check.md"
