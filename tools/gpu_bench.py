"""The GPU side of issue 13's device check (scripts/gpu-check.sh runs it on a lent GPU).

Three roles:

  make   — random-weight Llama-architecture models of the shapes of SmolLM2-135M, Llama-3.2-1B and
           Llama-3.1-8B, made with transformers on the GPU in bf16 and saved as Hugging Face folders
           (safetensors + config.json + the Llama 3.1 tokenizer.json), so that `pricer train` and
           PyTorch train the very same weights. Random weights give the speed and memory of a
           real checkpoint of that shape (the work per token does not depend on the values).
  torch  — PyTorch + PEFT LoRA training on one such folder, the same work per step as
           `pricer train` with recipes of this check: LoRA r 32 / alpha 64 / dropout 0.1 on
           q/k/v/o, bf16 base, batch 4, at most 182 tokens, loss only after `Price is $`, AdamW,
           clip 0.3. Prints one JSON line: tokens/s (median step), peak memory.
  matmul — the measured bf16 matrix rate (8192³ products), the denominator of MFU.

    python3 tools/gpu_bench.py make --out /tmp/models --tokenizer assets/llama-3.1-tokenizer.json.gz
    python3 tools/gpu_bench.py torch --model /tmp/models/llama-1b --items items.jsonl --steps 10
"""
import argparse, gzip, json, os, shutil, statistics, sys, time

import torch

SHAPES = {
    # name: (hidden, intermediate, layers, heads, kv_heads, tied)
    "smollm2-135m": (576, 1536, 30, 9, 3, True),
    "llama-1b": (2048, 8192, 16, 32, 8, True),
    "llama-8b": (4096, 14336, 32, 32, 8, False),
}
VOCAB = 128_256


def linear_params(name):
    h, i, layers, heads, kv, _ = SHAPES[name]
    hd = h // heads
    per_layer = h * heads * hd * 2 + h * kv * hd * 2 + 3 * h * i
    return per_layer * layers


def flops_per_token(name, seq):
    """LoRA on a frozen base: forward (2N) and the input gradients (2N) of every linear layer,
    plus causal attention (scores and weighted sum, forward and backward); adapters and the few
    price-token logits are left out (under 2% here)."""
    h, _, layers, heads, _, _ = SHAPES[name]
    attn = 3 * 2 * 2 * (seq / 2) * heads * (h // heads) * layers
    return 4 * linear_params(name) + attn


def make(a):
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(a.out, exist_ok=True)
    tok = os.path.join(a.out, "tokenizer.json")
    with gzip.open(a.tokenizer) as src, open(tok, "wb") as dst:
        shutil.copyfileobj(src, dst)
    for name in a.shapes.split(","):
        h, i, layers, heads, kv, tied = SHAPES[name]
        cfg = LlamaConfig(
            hidden_size=h, intermediate_size=i, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=kv, vocab_size=VOCAB, tie_word_embeddings=tied, rope_theta=500_000.0,
            rms_norm_eps=1e-5, max_position_embeddings=8192, bos_token_id=128000, eos_token_id=128001,
            torch_dtype="bfloat16",
        )
        t0 = time.perf_counter()
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16)
        d = os.path.join(a.out, name)
        model.save_pretrained(d, safe_serialization=True, max_shard_size="5GB")
        shutil.copy(tok, os.path.join(d, "tokenizer.json"))
        n = sum(p.numel() for p in model.parameters())
        del model
        torch.cuda.empty_cache()
        print(json.dumps({"made": name, "params": n, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


def train_torch(a):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.model, "tokenizer.json"))
    torch.manual_seed(42)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16).cuda()
    model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.1,
                                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                              task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.001)
    items = [json.loads(l) for l in open(a.items)]
    marker = "Price is $"

    def encode(prompt):
        i = prompt.rfind(marker) + len(marker)
        head = tok(prompt[: i - len(marker)].rstrip(), add_special_tokens=False)["input_ids"]
        tail = tok("\n\n" + marker, add_special_tokens=False)["input_ids"]
        price = tok(prompt[i:], add_special_tokens=False)["input_ids"]
        ids = [128000] + head[: a.max_len - 1 - len(tail) - len(price)] + tail + price
        return ids, [-100] * (len(ids) - len(price)) + price

    torch.cuda.reset_peak_memory_stats()
    rates, losses = [], []
    for step in range(a.steps + a.warmup):
        chunk = [items[(step * a.batch + k) % len(items)] for k in range(a.batch)]
        batch = [encode(it["prompt"]) for it in chunk]
        t = max(len(x[0]) for x in batch)
        ids = torch.tensor([x[0] + [128001] * (t - len(x[0])) for x in batch], device="cuda")
        labels = torch.tensor([x[1] + [-100] * (t - len(x[1])) for x in batch], device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()  # synchronizes
        dt = time.perf_counter() - t0
        losses.append(loss)
        if step >= a.warmup:
            rates.append(sum(len(x[0]) for x in batch) / dt)
    print(json.dumps({
        "framework": f"pytorch {torch.__version__} + peft",
        "tokens_per_s": round(statistics.median(rates), 1),
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20),
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
    }), flush=True)


def matmul(a):
    n = 8192
    x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        x @ y
    torch.cuda.synchronize()
    rate = 2 * n**3 * 10 / (time.perf_counter() - t0)
    print(json.dumps({"bf16_matmul_tflops": round(rate / 1e12, 1)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="role", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--tokenizer", default="assets/llama-3.1-tokenizer.json.gz")
    m.add_argument("--shapes", default=",".join(SHAPES))
    t = sub.add_parser("torch")
    t.add_argument("--model", required=True)
    t.add_argument("--items", required=True)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--max-len", type=int, default=182)
    sub.add_parser("matmul")
    f = sub.add_parser("flops")
    f.add_argument("--shape", required=True)
    f.add_argument("--seq", type=float, required=True)
    a = ap.parse_args()
    if a.role == "make":
        make(a)
    elif a.role == "torch":
        train_torch(a)
    elif a.role == "matmul":
        matmul(a)
    else:
        print(flops_per_token(a.shape, a.seq))


if __name__ == "__main__":
    sys.exit(main())
