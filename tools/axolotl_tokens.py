"""What axolotl trains on for an `input_output` file, as its RawInputOutputStrategy builds it:
each segment tokenized alone without special tokens (`tokenizer(text, add_special_tokens=False)`),
concatenated; labels are the ids of `label: true` segments and -100 elsewhere
(axolotl/prompt_strategies/input_output.py, with train_on_inputs: false).

Writes one JSON line per example, {"input_ids": [...], "labels": [...]}, the golden file the
export test compares our own tokenization with (tests/it/export_run.rs):

    pip install tokenizers==0.22.1
    python3 tools/axolotl_tokens.py tests/golden/axolotl/train.jsonl assets/llama-3.1-tokenizer.json.gz \
        > tests/golden/axolotl/train.tokens.jsonl
"""
import gzip, json, sys

from tokenizers import Tokenizer

data, tok_path = sys.argv[1], sys.argv[2]
raw = gzip.open(tok_path).read() if tok_path.endswith(".gz") else open(tok_path, "rb").read()
tok = Tokenizer.from_str(raw.decode())
for line in open(data):
    ids, labels = [], []
    for seg in json.loads(line)["segments"]:
        part = tok.encode(seg["text"], add_special_tokens=False).ids
        ids += part
        labels += part if seg["label"] else [-100] * len(part)
    print(json.dumps({"input_ids": ids, "labels": labels}, separators=(",", ":")))
