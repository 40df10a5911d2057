"""The PyTorch + PEFT side of the fine-tuning throughput comparison (README "Fine-tuning").

Trains SmolLM2-135M-Instruct (the same GGUF the Rust trainer uses, dequantized by transformers)
with LoRA r 32 / alpha 64 / dropout 0.1 on q/k/v/o, batch 4, sequences of at most 182 tokens
(descriptions shortened, the price kept), loss only after `Price is $`, AdamW lr 1e-4 — the same
work per step as `pricer train` — and prints tokens/s over the timed steps.

    pip install torch transformers peft gguf
    python3 tools/bench_pytorch_lora.py --items ../shared/data/real/curated_items.jsonl --steps 8
"""
import argparse, json, os, time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", default="assets/models/SmolLM2-135M-Instruct.Q4_1.gguf")
ap.add_argument("--items", required=True)
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--max-len", type=int, default=182)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(42)

d, f = os.path.split(os.path.abspath(a.gguf))
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1,
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.001)

items = [json.loads(l) for l in open(a.items)][: a.batch * (a.steps + a.warmup)]
def encode(prompt):
    i = prompt.rfind("Price is $") + len("Price is $")
    head = tok(prompt[: i - len("Price is $")].rstrip(), add_special_tokens=False)["input_ids"]
    tail = tok("\n\nPrice is $", add_special_tokens=False)["input_ids"]
    price = tok(prompt[i:], add_special_tokens=False)["input_ids"]
    keep = a.max_len - len(tail) - len(price)
    ids = head[:keep] + tail + price
    labels = [-100] * (len(ids) - len(price)) + price
    return ids, labels

tokens, elapsed = 0, 0.0
for step in range(a.steps + a.warmup):
    batch = [encode(it["prompt"]) for it in items[step * a.batch:(step + 1) * a.batch]]
    T = max(len(x[0]) for x in batch)
    ids = torch.tensor([x[0] + [tok.eos_token_id] * (T - len(x[0])) for x in batch])
    labels = torch.tensor([x[1] + [-100] * (T - len(x[1])) for x in batch])
    t0 = time.perf_counter()
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.3)
    opt.step(); opt.zero_grad()
    dt = time.perf_counter() - t0
    n = sum(len(x[0]) for x in batch)
    if step >= a.warmup:
        tokens += n; elapsed += dt
    print(f"step {step} loss {out.loss.item():.4f} {n / dt:.0f} tok/s", flush=True)
import resource

peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(
    f"pytorch {torch.__version__} threads {a.threads}: {tokens / elapsed:.1f} tokens/s over {a.steps} steps; "
    f"peak RSS {peak_mb:.0f} MB"
)
