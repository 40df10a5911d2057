#!/usr/bin/env python3
"""Reference curation: the original pipeline's Item class (design.md §4), with Hugging Face's
`tokenizers` (the same tokenizer.json) and `transformers`' clean-up of spaces written out.

Used to make the golden files under tests/golden/ from inputs that are not in the repo:
    python3 tools/reference_curate.py RAW.jsonl [--category NAME] > golden.tsv
Output: one line per input line: `line<TAB>kept|reason<TAB>token_count<TAB>sha256(prompt)`.
Requires: pip install tokenizers
"""
import gzip, hashlib, json, re, sys
from tokenizers import Tokenizer

MIN_TOKENS, MAX_TOKENS, MIN_CHARS, CEILING_CHARS = 150, 160, 300, 160 * 7
PREFIX, QUESTION = "Price is $", "How much does this cost to the nearest dollar?"
REMOVALS = ['"Batteries Included?": "No"', '"Batteries Included?": "Yes"', '"Batteries Required?": "No"',
            '"Batteries Required?": "Yes"', "By Manufacturer", "Item", "Date First", "Package", ":",
            "Number of", "Best Sellers", "Number", "Product "]


def load_tokenizer(path):
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return Tokenizer.from_str(data.decode())


def clean_up(s):  # transformers.PreTrainedTokenizerBase.clean_up_tokenization
    return (s.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


def scrub(stuff):
    stuff = re.sub(r'[:\[\]"{}【】\s]+', ' ', stuff).strip()
    stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
    words = stuff.split(' ')
    select = [word for word in words if len(word) < 7 or not any(char.isdigit() for char in word)]
    return " ".join(select)


def curate(tok, data):
    try:
        price = float(data.get("price"))
    except (ValueError, TypeError):
        return "no_price", None
    if not (0.5 <= price <= 999.49):
        return "out_of_range", None
    contents = '\n'.join(data['description'])
    if contents:
        contents += '\n'
    features = '\n'.join(data['features'])
    if features:
        contents += features + '\n'
    details = data.get('details')
    if not isinstance(details, str):
        details = json.dumps(details) if details is not None else ""
    if details:
        for r in REMOVALS:
            details = details.replace(r, "")
        contents += details + '\n'
    if len(contents) <= MIN_CHARS:
        return "too_short", None
    contents = contents[:CEILING_CHARS]
    text = f"{scrub(data['title'])}\n{scrub(contents)}"
    tokens = tok.encode(text, add_special_tokens=False).ids
    if len(tokens) <= MIN_TOKENS:
        return "too_few_tokens", None
    text = clean_up(tok.decode(tokens[:MAX_TOKENS], skip_special_tokens=False))
    prompt = f"{QUESTION}\n\n{text}\n\n{PREFIX}{str(round(price))}.00"
    return "kept", prompt


def main():
    args = sys.argv[1:]
    tok = load_tokenizer("assets/llama-3.1-tokenizer.json.gz")
    for i, raw in enumerate(open(args[0], "rb"), 1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw.decode("utf-8"))
            valid = (isinstance(data.get("title"), (str, type(None)))
                     and all(isinstance(data.get(k) or [], list) and all(isinstance(x, str) for x in data.get(k) or [])
                             for k in ("features", "description"))
                     and isinstance(data.get("price"), (str, int, float, type(None)))
                     and not isinstance(data.get("price"), bool)
                     and isinstance(data.get("details"), (str, dict, type(None))))
        except (UnicodeDecodeError, ValueError):
            valid = False
        if not valid:
            print(f"{i}\tmalformed\t0\t-")
            continue
        data["title"] = data.get("title") or ""
        data["features"] = data.get("features") or []
        data["description"] = data.get("description") or []
        status, prompt = curate(tok, data)
        if prompt is None:
            print(f"{i}\t{status}\t0\t-")
        else:
            n = len(tok.encode(prompt, add_special_tokens=False).ids)
            print(f"{i}\t{status}\t{n}\t{hashlib.sha256(prompt.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
