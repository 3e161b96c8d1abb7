"""Compress stages: fast checks of knobs, errors before work, sparsity measurement, the converter view."""

import json

import pytest
import torch

from cogumi.compress.gguf_export import byte_level_view, ftype_of
from cogumi.compress.prune import _check
from cogumi.compress.quantize import check_group_size, input_widths
from cogumi.compress.sparsity import group_of, group_sparsity, layer_sparsity, violates_n_m
from cogumi.entry import compose_entry
from cogumi.errors import ConfigError
from tests.conftest import run_entry


def test_user_example_composes_with_the_top_level_sparsity():
    cfg = compose_entry("compress", ["stage=prune", "sparsity=0.65"])
    assert cfg.stage.run.sparsity == 0.65
    assert cfg.stage.run.attention_sparsity is None and cfg.stage.run.mlp_sparsity is None
    # Calibration never touches the held-out fidelity text.
    assert cfg.stage.run.calibration_fallback != cfg.data.heldout_text


def test_group_size_128_rejected_for_576_wide_model(embedded_model):
    widths = input_widths(embedded_model)
    assert widths["q/k/v/gate/up_proj"] == 576
    with pytest.raises(ConfigError, match=r"group_size=128 .*fit this model: \[64, 32, 16\]"):
        check_group_size(128, widths)
    check_group_size(64, widths)


def test_bad_group_size_exits_2_before_loading_anything(outputs):
    result = run_entry("compress", "stage=quantize", "stage.run.group_size=128", "logger=none", timeout=120)
    assert result.returncode == 2
    assert "group_size=128" in result.stdout + result.stderr
    assert not (outputs / "artifacts" / "quantize").exists() or not any((outputs / "artifacts" / "quantize").iterdir())


@pytest.mark.parametrize(("method", "structure", "sparsities", "match"), [
    ("magnitude", "unstructured", {"mlp": 0.5}, "method"),
    ("wanda", "4:8", {"mlp": 0.5}, "structure"),
    ("wanda", "2:4", {"mlp": 0.65}, "2:4 pattern is exactly 50"),
    ("wanda", "unstructured", {"attention": 1.0}, "strictly between"),
])
def test_prune_knob_errors(method, structure, sparsities, match):
    with pytest.raises(ConfigError, match=match):
        _check(method, structure, sparsities)


def test_unknown_quant_type_lists_the_known_ones():
    with pytest.raises(ConfigError, match="Q4_K_M"):
        ftype_of("Q3_XYZ")
    assert ftype_of("q8_0") == ftype_of("Q8_0")


def test_groups_and_measured_sparsity_on_a_tiny_model():
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 8)
    model.self_attn = torch.nn.Module()
    model.self_attn.q_proj = torch.nn.Linear(8, 8, bias=False)
    model.mlp = torch.nn.Module()
    model.mlp.up_proj = torch.nn.Linear(8, 16, bias=False)
    with torch.no_grad():
        model.self_attn.q_proj.weight[:, :4] = 0  # 50 %
        model.mlp.up_proj.weight[:4] = 0  # 25 %
    layers = layer_sparsity(model)
    assert layers["self_attn.q_proj"] == {"group": "attention", "params": 64, "sparsity": 0.5}
    groups = group_sparsity(layers)
    assert groups["mlp"] == 0.25 and groups["embedding"] == 0.0
    assert group_of("model.layers.3.mlp.down_proj") == "mlp" and group_of("lm_head") is None


def test_n_m_check_catches_a_violation():
    weight = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0]])
    assert violates_n_m(weight, 2, 4) == 0
    weight[0, 1] = 5.0
    assert violates_n_m(weight, 2, 4) == 1


def test_converter_view_reduces_a_decoder_sequence_to_byte_level(tmp_path, embedded_model):
    view = byte_level_view(embedded_model, tmp_path)
    tokenizer = json.loads((view / "tokenizer.json").read_text())
    assert tokenizer["decoder"]["type"] == "ByteLevel"
    assert (view / "config.json").resolve() == (embedded_model / "config.json").resolve()
    # A folder that is already plain byte-level BPE is used as is.
    assert byte_level_view(view, tmp_path / "again") == view


def _cogumi_imports(package: str) -> set[str]:
    """Every `cogumi.*` module a package's source imports, at any depth of a function."""
    import ast
    from pathlib import Path

    import cogumi

    imported = set()
    for path in (Path(cogumi.__file__).parent / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cogumi."):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names if a.name.startswith("cogumi."))
    return imported


def test_compress_and_evaluate_import_each_other_one_way_only():
    """Fidelity scoring lives in cogumi.models.fidelity, so compress never reaches into evaluate."""
    assert not {m for m in _cogumi_imports("compress") if m.startswith("cogumi.evaluate")}
    assert not {m for m in _cogumi_imports("models") if m.startswith(("cogumi.evaluate", "cogumi.train"))}


LLAMA_PERPLEXITY_KLD_TAIL = """
kl_divergence: computing over 40 chunks, n_ctx=256, batch_size=2048, n_seq=8
====== Perplexity statistics ======
Mean PPL(Q)                   :  17.123456 ±   0.412345
Mean PPL(base)                :  16.500000 ±   0.400000
Mean PPL(Q)/PPL(base)         :   1.037785 ±   0.004321
====== KL divergence statistics ======
Mean    KLD:   0.031234 ±   0.000812
Maximum KLD:   2.345678
====== Token probability statistics ======
RMS Δp    :  4.123 ± 0.101 %
Same top p: 91.875 ± 0.304 %
"""


def test_llama_perplexity_kld_output_is_parsed_with_its_uncertainties():
    from cogumi.compress.llama_cli import LlamaToolError, parse_kld

    parsed = parse_kld(LLAMA_PERPLEXITY_KLD_TAIL)
    assert parsed["kld"] == 0.031234 and parsed["kld_uncertainty"] == 0.000812
    assert parsed["same_top_p"] == pytest.approx(0.91875) and parsed["same_top_p_uncertainty"] == pytest.approx(0.00304)
    assert parsed["ppl_ratio"] == pytest.approx(1.037785) and (parsed["chunks"], parsed["n_ctx"]) == (40, 256)
    with pytest.raises(LlamaToolError, match="kld"):
        parse_kld(LLAMA_PERPLEXITY_KLD_TAIL.replace("Mean    KLD", "Mean KL"))


def test_gguf_stage_refuses_to_calibrate_the_imatrix_on_the_heldout_text():
    cfg = compose_entry("compress", ["stage=gguf"])
    assert cfg.stage.run.imatrix_text != cfg.stage.run.text_file
    result = run_entry("compress", "stage=gguf", f"stage.run.imatrix_text={cfg.stage.run.text_file}", "logger=none")
    assert result.returncode == 2 and "held-out" in result.stderr + result.stdout


def test_gap_closed_is_the_share_of_the_pruning_gap_recovered():
    import math

    from cogumi.evaluate.recovery_gap import gap_closed, gap_closed_interval

    dense, pruned = [math.log(10.0)] * 4, [math.log(20.0)] * 4
    assert gap_closed(dense, pruned, [math.log(17.0)] * 4) == pytest.approx(0.3)
    assert gap_closed(dense, pruned, pruned) == 0.0
    rng = __import__("random").Random(0)
    nlls = {"dense": [2.3 + rng.gauss(0, 0.1) for _ in range(30)]}
    nlls["pruned"] = [d + 0.7 + rng.gauss(0, 0.05) for d in nlls["dense"]]
    nlls["recovered"] = [d + 0.35 + rng.gauss(0, 0.05) for d in nlls["dense"]]
    low, high = gap_closed_interval(nlls, 0.95, seed=0)
    point = gap_closed(nlls["dense"], nlls["pruned"], nlls["recovered"])
    assert low < point < high and 0.3 < low and high < 0.7


def test_packed_calibration_fills_the_token_budget(tmp_path, embedded_model):
    from cogumi.compress.calibration import calibration_dataset
    from cogumi.models import load_tokenizer

    tokenizer = load_tokenizer(embedded_model)
    texts = tmp_path / "calib.jsonl"
    texts.write_text("\n".join(json.dumps({"text": f"Short note number {i} about the weather."}) for i in range(200)))
    packed = calibration_dataset(str(texts), tokenizer, 4, 32, seed=0, pack=True)
    assert [len(row) for row in packed["input_ids"]] == [32] * 4
    one_per_row = calibration_dataset(str(texts), tokenizer, 4, 32, seed=0)
    assert len(one_per_row) == 4 and max(len(row) for row in one_per_row["input_ids"]) < 32
    with pytest.raises(ConfigError, match="fewer than 4096 tokens"):
        calibration_dataset(str(texts), tokenizer, 1, 4096, seed=0, pack=True)


def test_gptq_layer_errors_are_read_from_llmcompressors_log():
    from loguru import logger

    from cogumi.compress.quantize import _layer_errors

    with _layer_errors() as errors:
        logger.info("Quantizing 1 module(s): ['model.layers.0.mlp.down_proj']")
        logger.info("time 0.51s")
        logger.info("error 29010.25")
        logger.info("Quantizing 1 module(s): ['model.layers.1.self_attn.q_proj']")
        logger.info("error 3.50")
    logger.info("error 1.0")  # after the block: not recorded
    assert errors == {"model.layers.0.mlp.down_proj": 29010.25, "model.layers.1.self_attn.q_proj": 3.5}


def test_perplexity_ratio_is_the_paired_window_nll_shift_with_its_interval():
    from cogumi.compress.quantize import perplexity_ratio

    reference = [2.5 + 0.1 * i for i in range(12)]
    shifted = perplexity_ratio([v + 0.1 for v in reference], reference)
    assert shifted["perplexity_ratio"] == pytest.approx(2.71828 ** 0.1, rel=1e-4)
    assert shifted["perplexity_ratio_ci"] == [shifted["perplexity_ratio"]] * 2  # the same shift on every window
    noisy = perplexity_ratio([v + 0.1 + (0.05 if i % 2 else -0.05) for i, v in enumerate(reference)], reference)
    low, high = noisy["perplexity_ratio_ci"]
    assert low < noisy["perplexity_ratio"] < high and low > 1 and noisy["fidelity_windows"] == 12


def test_quantize_recipes_carry_the_observer_and_rtn_has_no_gptq():
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    from cogumi.compress.quantize import _recipe

    (rtn,) = _recipe("rtn", 4, 32, False, observer="mse")
    assert type(rtn) is QuantizationModifier
    weights = rtn.config_groups["group_0"].weights
    assert (weights.observer, weights.symmetric, weights.group_size) == ("mse", False, 32)
    (gptq,) = _recipe("gptq", 4, 64, True, dampening_frac=0.1)
    assert isinstance(gptq, GPTQModifier) and gptq.dampening_frac == 0.1


def test_awq_gptq_recipe_smooths_then_rounds_with_gptq():
    from llmcompressor.modifiers.quantization import GPTQModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    from cogumi.compress.quantize import _recipe

    awq, gptq = _recipe("awq_gptq", 4, 32, False, dampening_frac=0.1, observer="mse")
    assert isinstance(awq, AWQModifier) and isinstance(gptq, GPTQModifier) and gptq.dampening_frac == 0.1
    assert gptq.config_groups["group_0"].weights.group_size == 32


def test_fidelity_takes_perplexities_from_the_kl_pass():
    """One forward pass per model: the perplexities equal mean_nll's token means on the same windows."""
    import math

    from transformers import LlamaConfig, LlamaForCausalLM

    from cogumi.models.fidelity import fidelity, mean_nll, scoring_windows

    class Tokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) % 64 for c in text]}

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4)
    torch.manual_seed(0)
    model, reference = LlamaForCausalLM(config).eval(), LlamaForCausalLM(config).eval()
    documents = ["the quick brown fox jumps over the lazy dog " * 8, "pack my box with five dozen liquor jugs " * 8]
    report = fidelity(model, reference, Tokenizer(), documents, window=32, max_windows=6, batch_size=4)
    windows = scoring_windows(Tokenizer(), documents, 32, 6)
    assert report["perplexity"] == pytest.approx(math.exp(mean_nll(model, windows, 4)[0]), rel=1e-4)
    assert report["reference_perplexity"] == pytest.approx(math.exp(mean_nll(reference, windows, 4)[0]), rel=1e-4)
    assert report["tokens_scored"] == 6 * 31 and report["kl_mean"] > 0 and "model_nlls" not in report
    paired = fidelity(model, reference, Tokenizer(), documents, 32, 6, 4, window_nlls=True)
    assert len(paired["model_nlls"]) == len(paired["reference_nlls"]) == 6
    assert paired["perplexity"] == pytest.approx(math.exp(sum(paired["model_nlls"]) / 6), rel=1e-4)
    assert fidelity(model, model, Tokenizer(), documents, 32, 6, 4)["kl_mean"] == pytest.approx(0, abs=1e-6)


def test_recovery_text_examples_train_every_token_and_never_the_heldout_text(tmp_path, embedded_model):
    from cogumi.models import load_tokenizer
    from cogumi.train.recovery import encode_texts, text_records

    tokenizer = load_tokenizer(embedded_model)
    long_text = " ".join(f"word{i}" for i in range(300))
    examples = encode_texts(tokenizer, [{"text": long_text}, {"text": "too short"}], seq_len=64)
    assert len(examples) >= 2 and all(len(e.input_ids) <= 64 for e in examples)
    assert all(e.labels == e.input_ids for e in examples)  # no prompt mask: every token is a target
    ids = tokenizer(long_text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    chunks = [ids[s:s + 64] for s in range(0, len(ids), 64)]
    assert [e.input_ids for e in examples] == [c for c in chunks if len(c) >= 16]  # "too short" is dropped
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"document {i} " * 20}) for i in range(40)))
    train, val = text_records(str(docs), str(tmp_path / "heldout.txt"), seed=0, train=10, val=5)
    assert len(train) == 10 and len(val) == 5 and not {d["text"] for d in train} & {d["text"] for d in val}
    with pytest.raises(ConfigError, match="held-out"):
        text_records(str(docs), str(docs), seed=0, train=10, val=5)
