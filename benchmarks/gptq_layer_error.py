"""Why GPTQ W4A16 hurts the embedded model: per-layer output error on held-out inputs, GPTQ vs round-to-nearest.

For each named projection, the input Hessian H = XᵀX/n is collected from the dense model on held-out text
(the fidelity windows) and on each calibration set. llm-compressor's own `quantize_weight` (GPTQ) runs on a
calibration Hessian with the minmax observer's group-64 scales; its error is measured on held-out inputs,
rel = tr((W−Q) H (W−Q)ᵀ) / tr(W H Wᵀ), next to RTN with the same scales and to its error on the
calibration inputs themselves (the overfitting gap). Layer by layer, without the sequential pipeline.

    .venv/bin/python benchmarks/gptq_layer_error.py model.layers.20.mlp.down_proj model.layers.11.mlp.up_proj
"""

import argparse
import json
import sys
from pathlib import Path

from results_file import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gptq_layer_error.json"


def _hessians(lm, names: list[str], rows) -> tuple[dict, int]:
    import torch

    modules = dict(lm.named_modules())
    sums = {n: torch.zeros(modules[n].weight.shape[1], modules[n].weight.shape[1]) for n in names}

    def hook(name):
        def add(_module, args, _output):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            sums[name].add_(x.T @ x)
        return add

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    tokens = 0
    with torch.no_grad():
        for row in rows:
            ids = torch.as_tensor(row).reshape(1, -1)
            lm(input_ids=ids)
            tokens += ids.numel()
    for handle in handles:
        handle.remove()
    return {n: s / tokens for n, s in sums.items()}, tokens


def _relative_error(weight, quantized, hessian) -> float:
    diff = weight - quantized
    return ((diff @ hessian) * diff).sum().item() / ((weight @ hessian) * weight).sum().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="+", help="projection names, e.g. model.layers.20.mlp.down_proj")
    parser.add_argument("--curate", help="a curate artifact folder (train.jsonl): the pipeline's chat calibration")
    parser.add_argument("--dampening", type=float, nargs="+", default=[0.01, 0.1])
    args = parser.parse_args()

    import torch
    from compressed_tensors.quantization import QuantizationArgs
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight

    from cogumi.assets import embedded_model_dir
    from cogumi.compress.calibration import calibration_dataset
    from cogumi.data.text import read_documents
    from cogumi.hardware import HardwareSpec
    from cogumi.models import load_causal_lm
    from cogumi.models.fidelity import scoring_windows

    lm, tokenizer = load_causal_lm(embedded_model_dir(), HardwareSpec(name="cpu"))
    cache = ROOT / ".cache/cogumi/data/llamafactory/data"
    heldout_rows = scoring_windows(tokenizer, read_documents(cache / "wiki_demo.txt"), 256, 8).tolist()
    sources = {"c4 packed 16x256": (str(cache / "c4_demo.jsonl"), 16, 256, True)}
    if args.curate:
        class Curate:  # the calibration module reads an artifact through .file()
            def file(self, name):
                return Path(args.curate) / name
        sources = {"chat 8x128 (pipeline)": (Curate(), 8, 128, False), **sources}
    heldout, heldout_tokens = _hessians(lm, args.modules, heldout_rows)
    calibration = {}
    for label, (source, samples, length, pack) in sources.items():
        rows = calibration_dataset(source, tokenizer, samples, length, 1234, pack=pack)["input_ids"]
        calibration[label] = _hessians(lm, args.modules, rows)
        print(f"# {label}: {calibration[label][1]} tokens", file=sys.stderr, flush=True)
    calibration["held-out text itself (bound)"] = (heldout, heldout_tokens)

    modules = dict(lm.named_modules())
    quant_args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=64,
                                  actorder="static")
    rows = []
    for name in args.modules:
        weight = modules[name].weight.detach().float()
        scale = (weight.reshape(weight.shape[0], -1, 64).abs().amax(-1) / 7.5).clamp(min=1e-8)  # minmax observer
        step = scale.repeat_interleave(64, 1)
        rtn = torch.clamp(torch.round(weight / step), -8, 7) * step
        eigenvalues = torch.linalg.eigvalsh(heldout[name].double())
        row = {"module": name, "columns": weight.shape[1], "rtn_heldout": round(_relative_error(weight, rtn, heldout[name]), 5),
               "heldout_diag_max_over_median": round((heldout[name].diag().max() / heldout[name].diag().median()).item(), 1),
               "heldout_rank_1e-6": int((eigenvalues > eigenvalues.max() * 1e-6).sum()), "gptq": []}
        for label, (hessians, tokens) in calibration.items():
            calibration_rank = torch.linalg.eigvalsh(hessians[name].double())
            for dampening in args.dampening:
                quantized, _, _ = quantize_weight(weight.clone()[None], hessians[name].clone()[None], scale[None],
                                                  torch.zeros_like(scale)[None], None, quant_args, 128, dampening)
                row["gptq"].append({"calibration": label, "tokens": tokens, "dampening_frac": dampening,
                                    "calibration_rank_1e-6": int((calibration_rank > calibration_rank.max() * 1e-6).sum()),
                                    "heldout": round(_relative_error(weight, quantized[0], heldout[name]), 5),
                                    "on_calibration": round(_relative_error(weight, quantized[0], hessians[name]), 5)})
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"model": "SmolLM2-135M-Instruct (embedded, base)", "heldout_tokens": heldout_tokens,
              "scheme": "W4 symmetric group 64, minmax scales, actorder static", "rows": rows,
              "command": "python benchmarks/gptq_layer_error.py " + " ".join(sys.argv[1:])}
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
