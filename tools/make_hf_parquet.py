#!/usr/bin/env python3
"""Turns raw-form JSON lines into a Parquet file in Hugging Face row form (price as a string,
"None" when missing; details as a JSON string), the layout `datasets` yields.
    python3 tools/make_hf_parquet.py IN.jsonl OUT.parquet [N]
Requires: pip install pyarrow
"""
import json, sys
import pyarrow as pa, pyarrow.parquet as pq

rows = []
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    rows.append({
        "main_category": d.get("main_category"),
        "title": d.get("title"),
        "features": d.get("features") or [],
        "description": d.get("description") or [],
        "price": "None" if d.get("price") is None else str(d["price"]),
        "details": json.dumps(d.get("details") or {}),
        "parent_asin": d.get("parent_asin"),
    })
    if len(sys.argv) > 3 and len(rows) >= int(sys.argv[3]):
        break
pq.write_table(pa.Table.from_pylist(rows), sys.argv[2], compression="snappy")
