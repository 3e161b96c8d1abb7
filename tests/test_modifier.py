"""Modifiers: the promotion verdict, the artifact contract end to end, and GGUF LoRA == merged HF model."""

import json

import numpy as np
import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.modifiers.comparison import Scored, summary, verdict
from cogumi.train.modifier import promote_if_passed

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Question: What is 12 + 30?\nAnswer:",
           "Once upon a time, there was a", "The chemical symbol for gold is", "import numpy as np\n",
           "To make a cup of tea, first", "The largest planet in the solar system is", "Translate to French: cat",
           "1, 2, 3, 4,", "The opposite of hot is", "My favourite colour is", "Water boils at",
           "get_weather(city=", "The answer is", "In 1492, Columbus", "A list of fruits: apple, banana,",
           "SELECT * FROM", "Roses are red, violets are", "The speed of light is"]


def _scored(base: list[int], modifier: list[int], task: str = "cogumi_bfcl") -> list[Scored]:
    return [Scored(task, str(i), float(b), float(m)) for i, (b, m) in enumerate(zip(base, modifier))]


def _result(own: list[Scored], others: dict) -> dict:
    return {"own": summary(own), "others": {t: summary(rows) for t, rows in others.items()}}


def test_a_modifier_worse_than_the_base_fails_its_verdict():
    worse = _scored([1] * 60 + [0] * 60, [1] * 30 + [0] * 90)  # loses 30 items, gains none
    passed, reasons = verdict(_result(worse, {}), min_gain=0.0, max_drop=0.0)
    assert not passed and "not significantly above" in reasons[0]


def test_a_small_gain_inside_the_noise_is_not_enough():
    noisy = _scored([0, 1] * 50, [1, 0] * 25 + [1, 1] * 10 + [0, 1] * 15)  # 25 gains vs 15 losses of 100 items
    assert not verdict(_result(noisy, {}), min_gain=0.0, max_drop=0.0)[0]


def test_a_clear_gain_passes_unless_another_domain_drops():
    gain = _scored([0] * 100 + [1] * 20, [1] * 40 + [0] * 60 + [1] * 20)  # +40 items, no loss
    assert verdict(_result(gain, {}), min_gain=0.0, max_drop=0.0) == (True, [])
    drop = _scored([1] * 40, [0] * 40, "cogumi_gsm8k")
    passed, reasons = verdict(_result(gain, {"cogumi_gsm8k": drop}), min_gain=0.0, max_drop=0.0)
    assert not passed and "cogumi_gsm8k drops" in reasons[0]
    assert verdict(_result(gain, {"cogumi_gsm8k": drop}), min_gain=0.0, max_drop=None)[0]


def _modifier_artifact(store: ArtifactStore, passed: bool, name: str):
    with store.create("modifier", name, {}, [], name=name) as out:
        (out.dir / "card.md").write_text("card")
        out.metrics.update({"gate_passed": int(passed)})
        out.extra["verdict"] = {"passed": passed, "reasons": [] if passed else ["own-domain gain -0.1 ..."]}
    return out.artifact


def test_a_modifier_worse_than_the_base_is_not_promoted_and_the_previous_one_stays(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    good = _modifier_artifact(store, True, "good")
    assert promote_if_passed(store, good, "automation")
    worse = _modifier_artifact(store, False, "worse")
    assert not promote_if_passed(store, worse, "automation")
    assert store.resolve("promoted:modifier-automation").path == good.path


@pytest.mark.slow
def test_gguf_lora_in_llama_cpp_matches_the_merged_hf_model(embedded_model, tmp_path):
    """A random (but small) LoRA on the embedded model: llama.cpp's base F32 GGUF + GGUF LoRA at run time vs the
    HF model with the LoRA merged in, on the same token ids.

    Tolerance: the two engines already differ on the *base* model alone (different matmul kernels and
    summation order); the LoRA path may add at most as much again, so |Δ logprob| over each prompt's
    top-10 tokens must stay within 2x the base-only difference + 1e-3 — far below the LoRA's own effect,
    which is checked to be large, so a LoRA dropped or mis-scaled by the converter fails.
    """
    import torch
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf
    from cogumi.modifiers.gguf_lora import convert_lora

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    base = AutoModelForCausalLM.from_pretrained(embedded_model, dtype=torch.float32).eval()
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]

    def hf_logprobs(model):
        with torch.no_grad():
            return [torch.log_softmax(model(torch.tensor([i])).logits[0, -1], -1).numpy() for i in ids]

    base_hf = hf_logprobs(base)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)  # PEFT starts B at zero (a no-op); make the adapter do something
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = peft_model.merge_and_unload().eval()
    merged_hf = hf_logprobs(merged)

    base_gguf = convert_hf_to_gguf(embedded_model, tmp_path / "base-F32.gguf", converter_dir(), "F32")
    lora_gguf = convert_lora(tmp_path / "adapter", embedded_model, tmp_path / "adapter.gguf", converter_dir(), "f32")

    def cpp_logprobs(lora_path=None):
        llm = Llama(model_path=str(base_gguf), lora_path=str(lora_path) if lora_path else None, n_ctx=256,
                    n_threads=2, logits_all=True, verbose=False)
        rows = []
        for i in ids:
            llm.reset()
            llm.eval(i)
            logits = np.array(llm.scores[len(i) - 1], dtype=np.float64)
            rows.append(logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max())
        llm.close()
        return rows

    base_cpp, lora_cpp = cpp_logprobs(), cpp_logprobs(lora_gguf)

    def top10_gap(a, b):
        return max(float(np.abs(x[np.argsort(y)[-10:]] - y[np.argsort(y)[-10:]]).max()) for x, y in zip(a, b))

    engine_gap, lora_gap = top10_gap(base_cpp, base_hf), top10_gap(lora_cpp, merged_hf)
    lora_effect = top10_gap(merged_hf, base_hf)
    agreement = np.mean([x.argmax() == y.argmax() for x, y in zip(lora_cpp, merged_hf)])
    print(json.dumps({"engine_gap": engine_gap, "lora_gap": lora_gap, "lora_effect": lora_effect,
                      "next_token_agreement": float(agreement)}))
    assert lora_effect > 20 * (lora_gap + 1e-3), "the LoRA must change the model far more than the engines differ"
    assert agreement >= 0.95
    assert lora_gap <= 2 * engine_gap + 1e-3


def _run_in_process(entry: str, stage: str, overrides: list[str]):
    from hydra.utils import instantiate

    from cogumi.entry import build_context, compose_entry

    cfg = compose_entry(entry, [f"stage={stage}", *overrides])
    return instantiate(cfg.stage.run)(build_context(cfg, stage))


@pytest.mark.slow
def test_cascade_then_modifier_on_the_embedded_model(outputs, embedded_model):
    """The two stages end to end, tiny: the artifact layout the server and the router rely on."""
    common = ["logger=none", "domain=automation"]
    cascade = _run_in_process("train", "cascade", [
        *common, "stage.run.model=base", "stage.run.mine_items=8", "stage.run.max_records=8",
        "stage.run.tiers=[{kind: self, n: 2, temperature: 0.8}, {kind: reference}]"])
    funnel = cascade.manifest["cascade"]["funnel"]
    assert [r["tier"] for r in funnel] == ["student (greedy)", "self", "reference"]
    assert funnel[0]["attempted"] == 8 and funnel[1]["attempted"] == 8 - funnel[0]["solved"]
    assert funnel[2]["attempted"] == funnel[1]["attempted"] - funnel[1]["solved"]  # only what `self` left
    records = [json.loads(line) for split in ("train", "val") for line in
               (cascade.path / f"{split}.jsonl").read_text().splitlines()]
    assert len(records) == cascade.metrics["records"] == funnel[1]["kept"] + funnel[2]["kept"]
    assert all(r["metadata"]["verified"] == "key" for r in records)
    assert (cascade.path / "funnel.png").is_file()

    modifier = _run_in_process("train", "modifier", [
        *common, "stage.run.model=base", "domain.lora_rank=4", "stage.run.replay_dataset=null",
        "stage.run.max_steps=2", "stage.run.val_every=2", "stage.run.save_every=2", "stage.run.seq_len=512",
        "stage.run.progress_bar=false", "stage.run.comparison.own_items=4", "stage.run.gguf_type=ignored"])
    for relative in ("adapter/adapter_config.json", "lora/adapter.gguf", "card.md", "comparison.json"):
        assert (modifier.path / relative).is_file(), relative
    assert modifier.metrics["rank"] == 4 and modifier.metrics["train_records"] == len(
        (cascade.path / "train.jsonl").read_text().splitlines())
    assert 0 < modifier.metrics["adapter_mb"] < 10
    info = modifier.manifest["modifier"]  # where serve/modifier_catalog.py reads it
    assert info["domain"] == "automation" and info["rank"] == 4 and info["base_gguf"].endswith(".gguf")
    assert modifier.metrics["own/n"] == 4
    # 4 items can never show a significant gain: the modifier must not be promoted.
    assert modifier.metrics["gate_passed"] == 0
    assert not (outputs / "artifacts" / "promoted" / "modifier-automation.json").exists()
    fit, = [m.parent for m in (outputs / "artifacts" / "modifier_fit").glob("*/manifest.json")]
    assert (fit / "adapter" / "adapter_model.safetensors").is_file()
    assert not (fit / "model").exists(), "a modifier's fit keeps its adapter, not a merged 0.5 GB copy"


def test_the_base_gguf_is_the_one_made_from_the_student_and_promotion_falls_back_to_sft(tmp_path, caplog):
    from cogumi.artifacts import input_record
    from cogumi.errors import ConfigError
    from cogumi.hardware import HardwareSpec
    from cogumi.models.spec import ModelSpec
    from cogumi.modifiers.base_model import gguf_of, student_ref
    from cogumi.stage import StageContext

    store = ArtifactStore(tmp_path / "artifacts")
    sfts = []
    # names sort in creation order: two artifacts made within one millisecond are ordered by name
    for name in ("1-old", "2-new"):
        with store.create("sft", name, {}, [], name=name) as out:
            (out.dir / "model").mkdir()
        sfts.append(out.artifact)
    with store.create("gguf", "of-old", {}, [input_record("model", sfts[0])], name="of-old") as out:
        (out.dir / "gguf").mkdir()
        (out.dir / "gguf" / "F16.gguf").write_bytes(b"gguf")
    ctx = StageContext(stage="modifier", store=store, model=ModelSpec(name="m", hf_id="m"),
                       hardware=HardwareSpec(name="cpu"), config={}, fingerprint_config={})
    assert gguf_of(ctx, "sft/1-old", "F16") == sfts[0].path.parent.parent / "gguf" / "of-old" / "gguf" / "F16.gguf"
    with pytest.raises(ConfigError, match="no Q4_K_M.gguf"):
        gguf_of(ctx, "sft/1-old", "Q4_K_M")
    with pytest.raises(ConfigError, match="no GGUF of sft/2-new"):
        gguf_of(ctx, "latest:sft", "F16")  # the newest SFT has no GGUF: never another model's
    with caplog.at_level("WARNING"):
        assert student_ref(ctx, "promoted:student") == "latest:sft"
    assert "nothing promoted" in caplog.text
    store.promote(sfts[0], "student")
    assert student_ref(ctx, "promoted:student") == "promoted:student"


def _random_adapter(folder, rank: int, alpha: int, seed: int = 0, rslora: bool = False):
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    prefix = "base_model.model.model.layers.0.self_attn"
    tensors = {f"{prefix}.{m}.lora_A.weight": torch.randn(rank, 24, generator=generator) for m in ("q_proj", "v_proj")}
    tensors |= {f"{prefix}.{m}.lora_B.weight": torch.randn(16, rank, generator=generator) for m in ("q_proj", "v_proj")}
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha, "use_rslora": rslora,
                                                            "peft_type": "LORA"}))
    return tensors


def _update(tensors, module: str, scale: float):
    key = f"base_model.model.model.layers.0.self_attn.{module}"
    return scale * tensors[f"{key}.lora_B.weight"].double() @ tensors[f"{key}.lora_A.weight"].double()


@pytest.mark.parametrize("rslora", [False, True])
def test_svd_rank_reduction_is_the_best_low_rank_update_and_reports_its_error(tmp_path, rslora):
    import torch
    from safetensors.torch import load_file

    from cogumi.modifiers.adapter_svd import reduce_adapter

    tensors = _random_adapter(tmp_path / "r8", rank=8, alpha=16, rslora=rslora)
    scale = 16 / (8 ** 0.5 if rslora else 8)
    same = reduce_adapter(tmp_path / "r8", tmp_path / "same", rank=8)
    assert same["max_relative_error"] < 1e-5  # keeping every direction changes nothing
    report = reduce_adapter(tmp_path / "r8", tmp_path / "r3", rank=3)
    config = json.loads((tmp_path / "r3" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (3, 3, False)  # PEFT scale 1
    reduced = load_file(str(tmp_path / "r3" / "adapter_model.safetensors"))
    for module in ("q_proj", "v_proj"):
        full = _update(tensors, module, scale)
        u, s, vh = torch.linalg.svd(full)
        best = (u[:, :3] * s[:3]) @ vh[:3]  # Eckart–Young: the best rank-3 approximation
        assert torch.allclose(_update(reduced, module, 1.0), best, atol=1e-4)
        error = float(torch.linalg.norm(full - best) / torch.linalg.norm(full))
        key = f"base_model.model.model.layers.0.self_attn.{module}"
        assert abs(report["per_layer"][key] - error) < 1e-6 and error > 0.05
    with pytest.raises(Exception, match="must be in"):
        reduce_adapter(tmp_path / "r8", tmp_path / "r9", rank=9)
