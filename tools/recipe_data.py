#!/usr/bin/env python3
"""The data of the benchmark regression recipe (recipes/benchmark-regression.toml), from the output
of tools/holdout_split.py (never touching its test.jsonl):

    python3 tools/recipe_data.py SPLIT_DIR
writes SPLIT_DIR/val.jsonl (100 items of the benchmark's own distribution, `ed_test_2000[250:]`,
drawn with seed 12 from the training items: the run's validation set, not trained on) and
SPLIT_DIR/train_x2.jsonl (every other training item, the `ed_test_2000[250:]` ones twice, so that
about half of what the model sees is priced like the benchmark; shuffled with the same seed).
"""
import json, os, random, sys

out = sys.argv[1]
lines = open(os.path.join(out, "train.jsonl")).readlines()
ed = [l for l in lines if json.loads(l)["source"] == "ed_test_2000[250:]"]
rest = [l for l in lines if json.loads(l)["source"] != "ed_test_2000[250:]"]
rng = random.Random(12)
rng.shuffle(ed)
val, ed_train = ed[:100], ed[100:]
mix = rest + ed_train * 2
rng.shuffle(mix)
open(os.path.join(out, "val.jsonl"), "w").writelines(val)
open(os.path.join(out, "train_x2.jsonl"), "w").writelines(mix)
print(f"{len(val)} validation items, {len(mix)} training rows ({len(ed_train)} benchmark-like items twice)", file=sys.stderr)
