#!/usr/bin/env python3
"""Splits ../shared/data/real/curated_items.jsonl into the held-out test items of the issues
(the first 250 items, in file order, whose `source` is `ed_test_2000[250:]`: items of the
original benchmark's own distribution) and the training items (all the others).

    python3 tools/holdout_split.py ../shared/data/real/curated_items.jsonl OUT_DIR [N]
writes OUT_DIR/train.jsonl and OUT_DIR/test.jsonl. Never train on test.jsonl.
"""
import json, os, sys

src, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 250
os.makedirs(out, exist_ok=True)
test, train = [], []
for line in open(src):
    item = json.loads(line)
    (test if item["source"] == "ed_test_2000[250:]" and len(test) < n else train).append(line)
open(os.path.join(out, "test.jsonl"), "w").writelines(test)
open(os.path.join(out, "train.jsonl"), "w").writelines(train)
print(f"{len(train)} training items, {len(test)} held-out test items in {out}", file=sys.stderr)
