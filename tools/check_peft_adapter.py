"""Loads an adapter written by `pricer train` with Python's PEFT on the same base model and prints
greedy-digit prices for the first items, to compare with `pricer predict --checkpoint`.

    python3 tools/check_peft_adapter.py runs/NAME/checkpoints/checkpoint-N ITEMS.jsonl [N]
"""
import json, os, sys
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

ck, items = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 5
gguf = os.environ.get("PRICER_MODEL", "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf")
d, f = os.path.split(os.path.abspath(gguf))
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
model = PeftModel.from_pretrained(base, ck).eval()
digits = {tok.convert_tokens_to_ids(str(i)): str(i) for i in range(10)}
for line in list(open(items))[:n]:
    it = json.loads(line)
    p = it["prompt"]
    p = p[: p.find("Price is $") + len("Price is $")]
    ids = tok(p, return_tensors="pt", add_special_tokens=False)["input_ids"][:, -512:]
    out = ""
    with torch.no_grad():
        for step in range(7):
            logits = model(input_ids=ids).logits[0, -1]
            best = int(logits.argmax())
            if best not in digits:
                if out:
                    break
                best = max(digits, key=lambda t: logits[t])
            out += digits[best]
            ids = torch.cat([ids, torch.tensor([[best]])], dim=1)
    print(f"{float(out):.2f}\t{it['price']:.2f}\t{it['title'][:60]}")
