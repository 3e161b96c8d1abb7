"""Training throughput (real, non-pad tokens/s): Cogumi's Lightning loop with packing vs a plain
peft + torch loop without packing (padded batches with an attention mask), same data, same run.

Both: the embedded student (or --model), LoRA r=16 on all linear layers, AdamW, batch 4, rows of at
most --seq-len tokens, fp32 on CPU. The first step of each is not timed (one-time allocations).
Prints JSON and writes benchmarks/results/train_throughput.json. Goal (issue 4): packed ≥ 1.3×.

Then the same packed Lightning loop under the CPU profile's choices, in the same run: fp32 with LoRA
dropout 0.05 (the old profile), bf16 autocast with dropout 0.05, and bf16 autocast without dropout
(what hardware=cpu and the main job run). bf16 pays only on a CPU with AVX512-BF16 or AMX.

    .venv/bin/python benchmarks/train_throughput.py                 # 6 timed steps each
    .venv/bin/python benchmarks/train_throughput.py --steps 3 --seq-len 256
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from results_file import write_result

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def plain_loop(model_dir: str, records: list[dict], seq_len: int, batch_size: int, steps: int) -> dict:
    """The baseline: one example per row, right-padded to the batch's longest, attention mask on."""
    import torch
    from transformers import AutoModelForCausalLM

    from cogumi.models import load_tokenizer
    from cogumi.train.examples import IGNORE, encode_records
    from cogumi.train.module import LoraSettings, add_lora

    tokenizer = load_tokenizer(model_dir)
    examples = encode_records(tokenizer, records, seq_len)
    model = add_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), LoraSettings(16, 16, 0.05),
                     quantized=False)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    tokens = seconds = padded = 0.0
    for step in range(steps + 1):
        chunk = examples[step * batch_size:(step + 1) * batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.tensor([e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in chunk])
        labels = torch.tensor([e.labels + [IGNORE] * (width - len(e.labels)) for e in chunk])
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in chunk])
        started = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step > 0:
            tokens += int(mask.sum())
            padded += mask.numel()
            seconds += time.perf_counter() - started
    return {"tokens_per_s": round(tokens / seconds, 1), "timed_steps": steps, "real_tokens": int(tokens),
            "row_fill": round(tokens / padded, 3)}


def lightning_packed(model_dir: str, records: list[dict], seq_len: int, batch_size: int, steps: int,
                     precision: str = "32-true", dropout: float = 0.05) -> dict:
    """Cogumi's path: chat-template examples packed into rows, the LoraModule under a Lightning Trainer."""
    from cogumi.hardware import HardwareSpec
    from cogumi.models import load_causal_lm
    from cogumi.train.datamodule import PackedDataModule
    from cogumi.train.examples import encode_records, pack_examples
    from cogumi.train.module import LoraModule, LoraSettings, OptimSettings, add_lora
    from cogumi.train.trainer import LoopSettings, TokenThroughput, build_trainer, callback

    import torch

    hardware = dataclasses.replace(HardwareSpec(name="cpu"), batch_size=batch_size, threads=torch.get_num_threads(),
                                   precision=precision)
    model, tokenizer = load_causal_lm(model_dir, hardware)
    rows = pack_examples(encode_records(tokenizer, records, seq_len), seq_len, seed=0)
    peft_model = add_lora(model, LoraSettings(16, 16, dropout), quantized=False)
    peft_model.train()
    module = LoraModule(peft_model, OptimSettings(lr=2e-4, max_steps=steps + 1))
    data = PackedDataModule(rows, rows[:1], tokenizer.pad_token_id, batch_size, batch_size, steps + 1, seed=0)
    loop = LoopSettings(max_steps=steps + 1, val_every=10_000, save_every=10_000, patience=1, grad_clip=1.0,
                        progress_bar=False)
    trainer = build_trainer(hardware, loop, Path(tempfile.mkdtemp(prefix="cogumi-bench-")), logger=False)
    trainer.fit(module, datamodule=data)
    throughput = callback(trainer, TokenThroughput)
    filled = sum(r.real_tokens for r in rows) / (len(rows) * seq_len)
    return {"tokens_per_s": round(throughput.tokens_per_s(skip=1), 1), "timed_steps": steps,
            "real_tokens": sum(t for t, _ in throughput.batches[1:]), "row_fill": round(filled, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF folder (default: the embedded student)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads or os.cpu_count())

    from cogumi.assets import embedded_model_dir
    from cogumi.train.fixtures import alpaca_records

    model_dir = args.model or str(embedded_model_dir())
    records = alpaca_records(400)
    load_at_start = os.getloadavg()[0]  # the box may be shared: a ratio measured in one run stays fair
    started = time.time()
    baseline = plain_loop(model_dir, records, args.seq_len, args.batch_size, args.steps)
    packed = lightning_packed(model_dir, records, args.seq_len, args.batch_size, args.steps)
    variants = {f"{precision}_dropout{dropout}": lightning_packed(model_dir, records, args.seq_len, args.batch_size,
                                                                   args.steps, precision, dropout)
                for precision, dropout in (("bf16-mixed", 0.05), ("bf16-mixed", 0.0))}
    result = {
        "benchmark": "train_throughput",
        "model": model_dir, "seq_len": args.seq_len, "batch_size": args.batch_size, "lora_rank": 16,
        "data": "llamafactory alpaca_en_demo (first 400 records), chat template of the model",
        "torch_threads": args.threads or os.cpu_count(),
        "load_average_at_start": round(load_at_start, 2),
        "baseline_plain_peft_unpacked": baseline,
        "cogumi_lightning_packed": packed,
        "speedup": round(packed["tokens_per_s"] / baseline["tokens_per_s"], 2),
        "goal": 1.3,
        "cpu_profile_variants": {"32-true_dropout0.05": packed, **variants},
        "bf16_no_dropout_vs_fp32": round(variants["bf16-mixed_dropout0.0"]["tokens_per_s"] / packed["tokens_per_s"], 2),
        "wall_s": round(time.time() - started, 1),
    }
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
