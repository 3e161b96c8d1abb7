"""Training model code on a tiny random Llama: packing isolation, merge equality, hardware → Trainer."""

import pytest
import torch
from hydra.utils import instantiate

from cogumi.entry import compose_entry
from cogumi.train.datamodule import collate_rows
from cogumi.train.examples import encode_conversation, pack_examples, unpacked_rows
from cogumi.train.fixtures import write_tiny_llama
from cogumi.train.module import LoraSettings, add_lora, batch_loss
from cogumi.train.trainer import LoopSettings, build_trainer, trainer_arguments

HARDWARE = ["cpu", "h100", "h100x8", "a100-40g", "rtx4090", "m4-pro"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedded_model):
    from transformers import AutoModelForCausalLM

    from cogumi.models import load_tokenizer

    folder = write_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", embedded_model)
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), load_tokenizer(folder)


def _examples(tokenizer):
    chats = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
              {"role": "assistant", "content": f"It is {2 * i}."}] for i in range(3)]
    return [encode_conversation(tokenizer, chat, 256) for chat in chats]


def test_packed_examples_never_attend_to_each_other(tiny):
    _, model, tokenizer = tiny
    examples = _examples(tokenizer)
    packed = collate_rows(pack_examples(examples, seq_len=512, seed=0), tokenizer.pad_token_id)
    assert packed["input_ids"].shape[0] == 1  # all three share one row
    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                              use_cache=False).logits[0]
        # The same row with one running position sequence = plain causal attention across examples.
        leaky_logits = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
    offset, row = 0, packed["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(row) if p == 0] + [len(row)]
    for start, end in zip(starts, starts[1:]):
        alone = torch.tensor([packed["input_ids"][0, start:end].tolist()])
        with torch.no_grad():
            alone_logits = model(input_ids=alone, use_cache=False).logits[0]
        torch.testing.assert_close(packed_logits[start:end], alone_logits, atol=1e-4, rtol=1e-4)
        if start > 0:  # the control: without the reset, later examples do see earlier ones
            assert not torch.allclose(leaky_logits[start:end], alone_logits, atol=1e-3)
        offset = end
    assert offset == len(row)


def test_packed_and_unpacked_batches_give_the_same_loss(tiny):
    _, model, tokenizer = tiny
    examples = _examples(tokenizer)
    with torch.no_grad():
        packed = batch_loss(model, collate_rows(pack_examples(examples, 512, 0), tokenizer.pad_token_id))
        unpacked = batch_loss(model, collate_rows(unpacked_rows(examples), tokenizer.pad_token_id))
    torch.testing.assert_close(packed, unpacked, atol=1e-4, rtol=1e-4)


def test_merged_model_matches_base_plus_adapter(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from cogumi.train.merge import merged_model

    folder, _, tokenizer = tiny
    peft_model = add_lora(AutoModelForCausalLM.from_pretrained(folder), LoraSettings(rank=4, dropout=0.0),
                          quantized=False)
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # fresh LoRA is a no-op (B = 0); make it a real update
            torch.nn.init.normal_(param, std=0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([tokenizer("merging keeps the function")["input_ids"]])
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=ids).logits
        base = peft_model.get_base_model()
        merged = merged_model(str(folder), tmp_path / "adapter", torch.float32).eval()
        actual = merged(input_ids=ids).logits
        with peft_model.disable_adapter():
            untouched = base(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(untouched, expected, atol=1e-3)  # the adapter did change the output
    assert not any("lora" in name for name, _ in merged.named_parameters())


@pytest.mark.parametrize("option", HARDWARE)
def test_every_hardware_profile_reaches_the_trainer(option):
    cfg = compose_entry("train", [f"hardware={option}", "stage=sft"])
    spec = instantiate(cfg.hardware)
    loop = LoopSettings(max_steps=10, val_every=5, save_every=5, patience=2, grad_clip=1.0)
    arguments = trainer_arguments(spec, loop)
    assert arguments["accelerator"] == cfg.hardware.accelerator and arguments["devices"] == cfg.hardware.devices
    assert arguments["strategy"] == cfg.hardware.strategy and arguments["precision"] == cfg.hardware.precision
    assert arguments["accumulate_grad_batches"] == cfg.hardware.grad_accum
    assert arguments["val_check_interval"] == 5 * cfg.hardware.grad_accum
    if option == "cpu":  # the only profile this machine can build a Trainer for
        trainer = build_trainer(spec, loop, checkpoint_dir=None, logger=False)
        assert trainer.accumulate_grad_batches == spec.grad_accum and trainer.max_steps == 10
        assert trainer.gradient_clip_val == 1.0


def test_qlora_profiles_ask_for_nf4_double_quant_and_8bit_adam():
    from cogumi.models.loader import quantization_config

    spec = instantiate(compose_entry("train", ["hardware=h100", "stage=sft"]).hardware)
    bnb = quantization_config(spec)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and spec.optimizer == "adamw_8bit"
    assert spec.precision == "bf16-mixed"


def test_recovery_merge_keeps_the_pruned_zeros(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from cogumi.train.merge import merged_model

    folder, _, _ = tiny
    pruned = AutoModelForCausalLM.from_pretrained(folder)
    weight = pruned.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight[:, ::2] = 0.0  # half the columns pruned
    pruned.save_pretrained(tmp_path / "pruned")
    peft_model = add_lora(AutoModelForCausalLM.from_pretrained(tmp_path / "pruned"), LoraSettings(rank=4), False)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    dense = merged_model(str(tmp_path / "pruned"), tmp_path / "adapter", torch.float32)
    sparse = merged_model(str(tmp_path / "pruned"), tmp_path / "adapter", torch.float32, keep_zeros=True)
    assert (dense.model.layers[0].mlp.down_proj.weight[:, ::2] != 0).any()  # a plain merge fills them in
    kept = sparse.model.layers[0].mlp.down_proj.weight
    assert (kept[:, ::2] == 0).all() and (kept[:, 1::2] != weight[:, 1::2]).any()


def test_recovery_picks_the_records_the_model_finds_hardest(tiny):
    from cogumi.train.recovery import reply_losses, worst_fraction

    _, model, tokenizer = tiny
    records = [{"id": str(i), "instruction": "Repeat: a", "response": "a " * (1 + i)} for i in range(10)]
    losses = reply_losses(model, tokenizer, records, seq_len=256, batch_size=4)
    alone = reply_losses(model, tokenizer, records[3:4], seq_len=256, batch_size=1)
    assert losses[3] == pytest.approx(alone[0], rel=1e-4)  # batching with padding does not change a score
    worst = worst_fraction(records, losses, 0.2)
    assert len(worst) == 2
    assert {r["id"] for r in worst} == {records[i]["id"] for i in sorted(range(10), key=lambda i: -losses[i])[:2]}


def test_distill_mix_replays_the_requested_share():
    from cogumi.train.distill import with_replay

    targeted = [{"id": f"t{i}"} for i in range(40)]
    replay = [{"id": f"r{i}"} for i in range(100)]
    mix = with_replay(targeted, replay, 0.2, seed=0)
    assert len(mix) == 50 and sum(r["id"].startswith("r") for r in mix) == 10
    assert mix == with_replay(targeted, replay, 0.2, seed=0)  # deterministic


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    from transformers import AutoModelForCausalLM

    folder, _, tokenizer = tiny
    batch = collate_rows(pack_examples(_examples(tokenizer), 512, 0), tokenizer.pad_token_id)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = add_lora(AutoModelForCausalLM.from_pretrained(folder), LoraSettings(rank=4, dropout=0.0), False,
                         gradient_checkpointing=checkpointing)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.05)
        model.train()
        batch_loss(model, batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)
