"""Rewrites raw Amazon metadata lines (raw or Hugging Face row form) as a shop-style CSV with other
column names: description and features as text cells (lines joined by newlines), details as a JSON
column, an empty price where there is none. Used to measure curating a user's table against the
same items from raw lines (issue 14):

    python3 tools/raw_to_csv.py raw.jsonl shop.csv
"""
import csv
import json
import sys


def main(src, dst):
    with open(src, encoding="utf-8") as f, open(dst, "w", newline="", encoding="utf-8") as out:
        w = csv.writer(out)
        w.writerow(["product_name", "desc", "bullet_points", "attributes", "list_price", "department"])
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            price = r.get("price")
            if price is None or price == "None":
                price = ""
            details = r.get("details") or ""
            if not isinstance(details, str):
                details = json.dumps(details)
            w.writerow([
                r.get("title") or "",
                "\n".join(r.get("description") or []),
                "\n".join(r.get("features") or []),
                details,
                price,
                r.get("main_category") or "",
            ])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
