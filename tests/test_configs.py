"""Every config of every group composes, every `_target_` resolves, and stage configs fit their code."""

import inspect

import pytest
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from cogumi.entry import compose_entry, stages_of
from cogumi.paths import CONF_DIR, PROJECT_ROOT

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "stage"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
STAGES = sorted(p.stem for p in (CONF_DIR / "stage").glob("*.yaml"))
PRESETS = [(folder, p.stem) for folder in ("experiments", "sweeps") for p in sorted((PROJECT_ROOT / folder).glob("*.yaml"))]


def _targets(node, path=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node["_target_"]
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}".lstrip("."))


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_targets_resolve(group, option):
    cfg = compose_entry("evaluate", [f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container[group] is not None
    for where, target in _targets(container[group], group):
        assert callable(get_object(target)), f"{where}: {target}"


@pytest.mark.parametrize("option", ["cpu", "h100", "h100x8", "a100-40g", "rtx4090", "m4-pro"])
def test_hardware_profiles_instantiate_with_their_values(option):
    cfg = compose_entry("evaluate", [f"hardware={option}"])
    spec = instantiate(cfg.hardware)
    assert spec.name == option
    assert spec.batch_size == cfg.hardware.batch_size and spec.strategy == cfg.hardware.strategy
    if option.startswith(("h100", "a100", "rtx")):
        # The seeds' QLoRA recipe on CUDA profiles: NF4 + double quant with bf16 compute.
        assert spec.load_in_4bit and spec.bnb_4bit_quant_type == "nf4" and spec.bnb_4bit_double_quant
        assert spec.device == "cuda"


def test_h100_keeps_the_seeds_effective_batch():
    spec = instantiate(compose_entry("evaluate", ["hardware=h100"]).hardware)
    assert spec.batch_size * spec.grad_accum * spec.devices == 64


@pytest.mark.parametrize("stage", STAGES)
def test_stage_config_fits_its_function(stage):
    """Like litgpt's config-hub test: a stage yaml whose keys drift from its `run` signature fails here."""
    entry = OmegaConf.load(CONF_DIR / "stage" / f"{stage}.yaml").area
    cfg = compose_entry(entry, [f"stage={stage}"])
    assert cfg.stage.name == stage
    run = OmegaConf.to_container(cfg.stage.run, resolve=True)
    function = get_object(run.pop("_target_"))
    run.pop("_partial_", None)
    inspect.signature(function).bind(None, **run)  # raises TypeError on a missing or unknown knob


@pytest.mark.parametrize(("folder", "preset"), PRESETS, ids=[f"{f}={p}" for f, p in PRESETS])
def test_presets_compose(folder, preset):
    cfg = compose_entry("evaluate", [f"{folder}={preset}"])
    if folder == "experiments":
        assert cfg.pipeline.steps, "an experiment preset names the pipeline it runs"


def test_stage_shortcuts_reach_the_config():
    cfg = compose_entry("evaluate", ["sparsity=0.65", "rank=32", "threshold=0.8"])
    assert (cfg.sparsity, cfg.rank, cfg.threshold) == (0.65, 32, 0.8)


def test_each_stage_belongs_to_an_entry_point():
    owned = {s for entry in ("train", "compress", "evaluate", "serve") for s in stages_of(entry)}
    assert owned == set(STAGES)
