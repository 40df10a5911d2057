#!/usr/bin/env python3
"""Reference numbers for the pricers' tests, computed with the libraries the original used.

    pip install numpy scikit-learn sentence-transformers
    python3 tools/reference_pricers.py ../shared/data/real/curated_items.jsonl \
        assets/models/all-MiniLM-L6-v2 > tests/golden/pricers.json

On the first 3,000 items of the real curated items (in file order):
- the original's 4 features of the first 20 items and the linear regression on them
  (scikit-learn `LinearRegression`, and numpy's SVD least squares on the same matrix);
- `CountVectorizer(max_features=1000, stop_words='english')` over the test prompts: the
  vocabulary with each term's total count, and the least-squares coefficients on it
  (numpy's minimum-norm `lstsq` of the centred matrix; scikit-learn's sparse `lsqr` fit is
  reported beside it);
- `LinearSVR()` (defaults) on the 4 features standardised (mean 0, std 1 over the 3,000);
- scikit-learn's analyzer and gensim's `simple_preprocess` on edge strings and 200 prompts;
- all-MiniLM-L6-v2 sentence embeddings (sentence-transformers) of the descriptions of items
  3000..3020.
"""
import json, sys
import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.svm import LinearSVR

QUESTION = "How much does this cost to the nearest dollar?"
PREFIX = "Price is $"
BRANDS = ["hp", "dell", "lenovo", "samsung", "asus", "sony", "canon", "apple", "intel"]


def test_prompt(p):
    return p.split(PREFIX)[0] + PREFIX


def description(p):
    text = p.replace(QUESTION + "\n\n", "")
    return text.split("\n\nPrice is $")[0]


def weight(d):  # the original get_weight, missing or unknown -> None
    s = d.get("Item Weight")
    if s:
        parts = s.split(" ")
        try:
            amount = float(parts[0])
            unit = parts[1].lower()
        except (ValueError, IndexError):
            return None
        if unit == "pounds":
            return amount
        if unit == "ounces":
            return amount / 16
        if unit == "grams":
            return amount / 453.592
        if unit == "milligrams":
            return amount / 453592
        if unit == "kilograms":
            return amount / 0.453592
        if unit == "hundredths" and len(parts) > 2 and parts[2].lower() == "pounds":
            return amount / 100
    return None


def rank(d):
    r = d.get("Best Sellers Rank")
    if r:
        v = list(r.values())
        return sum(v) / len(v)
    return None


def features(items):
    rows = []
    for it in items:
        d = json.loads(it["details"])
        b = d.get("Brand")
        rows.append([weight(d), rank(d), len(test_prompt(it["prompt"])), 1.0 if b and b.lower() in BRANDS else 0.0])
    fill = []
    for j in range(4):
        present = [r[j] for r in rows if r[j] is not None]
        fill.append(sum(present) / len(present))
    x = np.array([[r[j] if r[j] is not None else fill[j] for j in range(4)] for r in rows], dtype=float)
    return x, fill


def lstsq_centred(x, y):
    xm, ym = x.mean(axis=0), y.mean()
    coef = np.linalg.lstsq(x - xm, y - ym, rcond=None)[0]
    return coef, ym - xm @ coef


def main():
    items = [json.loads(l) for l in open(sys.argv[1])]
    train = items[:3000]
    y = np.array([it["price"] for it in train])
    out = {"n_train": len(train)}

    x, fill = features(train)
    lr = LinearRegression().fit(x, y)
    coef, icpt = lstsq_centred(x, y)
    out["features"] = {"first_rows": x[:20].tolist(), "fill": fill, "sklearn_coef": lr.coef_.tolist(),
                       "sklearn_intercept": float(lr.intercept_), "lstsq_coef": coef.tolist(),
                       "lstsq_intercept": float(icpt)}

    xs = (x - x.mean(axis=0)) / x.std(axis=0)
    svr = LinearSVR().fit(xs, y)
    out["svr_standardised_features"] = {"coef": svr.coef_.tolist(), "intercept": float(svr.intercept_[0]),
                                        "n_iter": int(svr.n_iter_)}

    docs = [test_prompt(it["prompt"]) for it in train]
    cv = CountVectorizer(max_features=1000, stop_words="english")
    xb = cv.fit_transform(docs)
    terms = cv.get_feature_names_out().tolist()
    totals = np.asarray(xb.sum(axis=0)).ravel().tolist()
    full = CountVectorizer(stop_words="english").fit(docs)
    all_totals = np.asarray(full.transform(docs).sum(axis=0)).ravel()
    cutoff = int(sorted(all_totals, reverse=True)[999])
    lrb = LinearRegression().fit(xb, y)
    coef_b, icpt_b = lstsq_centred(xb.toarray().astype(float), y)
    out["bow"] = {"terms": terms, "totals": [int(t) for t in totals], "cutoff_count": cutoff,
                  "lstsq_coef": coef_b.tolist(), "lstsq_intercept": float(icpt_b),
                  "sklearn_intercept": float(lrb.intercept_),
                  "sklearn_predictions": lrb.predict(cv.transform([test_prompt(it["prompt"]) for it in items[3000:3020]])).tolist()}

    from gensim.utils import simple_preprocess
    analyzer = CountVectorizer(stop_words="english").build_analyzer()
    edge = ["Size 1½ inch, 2² area; x_y _under café NAÏVE 12abc abc12 a b cd",
            "Ünïcödé — 日本語テキスト ١٢٣ digits٣x; ÅNGSTRÖM ﬁne ǅemal ⅫV",
            "don't won't it's e-mail 3.5mm 10x14x1 MERV-8 B0123XYZ"]
    texts = edge + [test_prompt(it["prompt"]) for it in items[:200]]
    out["tokens"] = {"texts": texts, "sklearn": [analyzer(s) for s in texts],
                     "gensim": [simple_preprocess(s) for s in texts]}

    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(sys.argv[2], device="cpu")
    texts = [description(it["prompt"]) for it in items[3000:3020]]
    emb = model.encode(texts, batch_size=32, normalize_embeddings=False)
    out["embeddings"] = {"texts_from": 3000, "vectors": [[round(float(v), 7) for v in e] for e in emb]}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
