#!/usr/bin/env python3
"""Embedding throughput of sentence-transformers (all-MiniLM-L6-v2, CPU, batch 32) on the
descriptions of the first N items of a curated items file — the reference for `pricer embed
--no-cache --items FILE --size N`.

    pip install sentence-transformers
    python3 tools/bench_embeddings.py ITEMS.jsonl assets/models/all-MiniLM-L6-v2 [N]
"""
import json, sys, time

QUESTION = "How much does this cost to the nearest dollar?"
items = [json.loads(l) for l in open(sys.argv[1])][: int(sys.argv[3]) if len(sys.argv) > 3 else 2000]
texts = [it["prompt"].replace(QUESTION + "\n\n", "").split("\n\nPrice is $")[0] for it in items]
import torch
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[2], device="cpu")
model.encode(texts[:64], batch_size=32)  # warm-up
t = time.perf_counter()
model.encode(texts, batch_size=32)
secs = time.perf_counter() - t
print(f"{len(texts)} texts in {secs:.2f} s: {len(texts) / secs:.1f} texts/s (torch {torch.__version__}, {torch.get_num_threads()} threads)")
