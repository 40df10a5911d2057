"""Makes the fixture of `pricer import-run`: a tiny Hugging Face Trainer + PEFT LoRA run, as an
axolotl or a plain Trainer script leaves its output folder, plus the logits PyTorch computes with
its last adapter, for the test that our engine loads the adapter and gives the same logits.

    python3 tools/make_trainer_fixture.py tests/fixtures/hf_trainer_run

Writes (all small; a few hundred KB):
    base/                 a random tiny Llama (2 layers, hidden 32, GQA 4/2 heads, tied embeddings)
                          with a byte-level tokenizer (256 bytes + <|endoftext|>): config.json,
                          model.safetensors, tokenizer.json
    output/               the Trainer's output_dir: checkpoint-4/ and checkpoint-8/ (adapter_model.safetensors,
                          adapter_config.json, trainer_state.json; the optimizer, scheduler and RNG
                          files are deleted to keep the fixture small), and at the top the final
                          adapter and trainer_state.json (trainer.save_model() + save_state())
    expected.json         token ids of one prompt, and the last position's logits of the base model
                          and of the base with checkpoint-8's adapter (PyTorch, float32)

Needs torch, transformers (5.x), peft and tokenizers (pip install torch transformers peft).
"""
import json
import os
import shutil
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

out = sys.argv[1]
torch.manual_seed(7)
base_dir, run_dir = os.path.join(out, "base"), os.path.join(out, "output")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(base_dir)

# Byte-level BPE without merges: every byte one token, so the ten digits are tokens.
alphabet = pre_tokenizers.ByteLevel.alphabet()
byte_to_unicode = sorted(alphabet)
vocab = {ch: i for i, ch in enumerate(byte_to_unicode)}
vocab["<|endoftext|>"] = len(vocab)
tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens(["<|endoftext|>"])
tok.save(os.path.join(base_dir, "tokenizer.json"))
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")

cfg = LlamaConfig(
    vocab_size=len(vocab),
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    rope_theta=500000.0,  # Llama 3's, not the default: the loader must read it
    tie_word_embeddings=True,
    bos_token_id=None,
    eos_token_id=vocab["<|endoftext|>"],
    pad_token_id=vocab["<|endoftext|>"],
)
base = LlamaForCausalLM(cfg).float()
base.save_pretrained(base_dir, safe_serialization=True)
# Keep only what a loader needs (no generation_config.json).
for f in os.listdir(base_dir):
    if f not in ("config.json", "model.safetensors", "tokenizer.json"):
        os.remove(os.path.join(base_dir, f))

# Prompts as the curation writes them; loss only on the price (the completion), as axolotl's
# input_output segments with train_on_inputs false do.
names = ["Steel hex bolt", "Garden hose", "LED desk lamp", "Wool socks", "Phone case", "Car wax",
         "Kitchen scale", "Dog leash", "Yoga mat", "Camping stove", "Wall clock", "Ceramic mug"]
prices = [3, 25, 40, 12, 9, 18, 22, 15, 30, 85, 27, 11]
Q = "How much does this cost to the nearest dollar?\n\n"


def example(name, price):
    prompt = f"{Q}{name}\nA fine {name.lower()} for every day use.\n\nPrice is $"
    ids_p = hf_tok(prompt, add_special_tokens=False)["input_ids"]
    ids_c = hf_tok(f"{price}.00", add_special_tokens=False)["input_ids"]
    return {"input_ids": ids_p + ids_c, "labels": [-100] * len(ids_p) + ids_c}


train = [example(n, p) for n, p in zip(names[:10], prices[:10])]
val = [example(n, p) for n, p in zip(names[10:], prices[10:])]


def collate(batch):
    n = max(len(b["input_ids"]) for b in batch)
    pad = vocab["<|endoftext|>"]
    ids = torch.tensor([b["input_ids"] + [pad] * (n - len(b["input_ids"])) for b in batch])
    labels = torch.tensor([b["labels"] + [-100] * (n - len(b["labels"])) for b in batch])
    mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"])) for b in batch])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                  task_type="CAUSAL_LM")
model = get_peft_model(LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32), lora)
args = TrainingArguments(
    output_dir=run_dir,
    max_steps=8,
    per_device_train_batch_size=4,
    per_device_eval_batch_size=2,
    learning_rate=2e-2,
    lr_scheduler_type="cosine",
    warmup_steps=1,
    weight_decay=0.0,
    max_grad_norm=1.0,
    logging_steps=1,
    eval_strategy="steps",
    eval_steps=4,
    save_strategy="steps",
    save_steps=4,
    seed=7,
    report_to=[],
    use_cpu=True,
    remove_unused_columns=False,
    dataloader_num_workers=0,
)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, data_collator=collate)
trainer.train()
trainer.save_model(run_dir)
trainer.save_state()
keep = {"adapter_model.safetensors", "adapter_config.json", "trainer_state.json"}
for root, dirs, files in os.walk(run_dir):
    for f in files:
        if f not in keep:
            os.remove(os.path.join(root, f))

# The logits our engine must reproduce.
prompt = f"{Q}Ceramic mug\nA fine ceramic mug for every day use.\n\nPrice is $"
ids = hf_tok(prompt, add_special_tokens=False)["input_ids"]
fresh = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
with torch.no_grad():
    base_logits = fresh(input_ids=torch.tensor([ids])).logits[0, -1].tolist()
    tuned = PeftModel.from_pretrained(fresh, os.path.join(run_dir, "checkpoint-8")).eval()
    tuned_logits = tuned(input_ids=torch.tensor([ids])).logits[0, -1].tolist()
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump({"prompt": prompt, "ids": ids, "base_logits": base_logits, "adapter_logits": tuned_logits,
               "torch": torch.__version__, "peft": __import__("peft").__version__,
               "transformers": __import__("transformers").__version__}, f)
print("wrote", out)
