"""Gates: thresholds are checked as written, and only a passing artifact is promoted."""

import json

import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ConfigError
from cogumi.evaluate import estimates
from cogumi.evaluate.gate_checks import check_all, results_table, validate
from cogumi.stats import compare_paired, mean_estimate

from conftest import run_entry

GATES = {
    "absolute": [{"metric": "acc", "min": 0.5}, {"metric": "size_mb", "max": 100}],
    "relative": [{"metric": "acc", "max_drop": 0.05}],
    "reference": "base",
}


def test_passing_metrics_pass_every_check():
    results = check_all(GATES, {"acc": 0.62, "size_mb": 80}, {"acc": 0.64})
    assert len(results) == 3 and all(r.passed for r in results)


@pytest.mark.parametrize(("metrics", "reference", "failing"), [
    ({"acc": 0.45, "size_mb": 80}, {"acc": 0.46}, ["acc >= 0.5"]),
    ({"acc": 0.62, "size_mb": 120}, {"acc": 0.62}, ["size_mb <= 100"]),
    ({"acc": 0.55, "size_mb": 80}, {"acc": 0.64}, ["acc drop <= 0.05"]),
    ({"size_mb": 80}, {"acc": 0.64}, ["acc >= 0.5", "acc drop <= 0.05"]),  # missing metric fails
    ({"acc": 0.62, "size_mb": 80}, {}, ["acc drop <= 0.05"]),  # missing on the reference fails
])
def test_missed_thresholds_fail(metrics, reference, failing):
    results = check_all(GATES, metrics, reference)
    assert sorted(f"{r.metric} {r.bound}" for r in results if not r.passed) == sorted(failing)


def test_bad_gate_configs_are_config_errors():
    with pytest.raises(ConfigError, match="allowed"):
        validate({"absolute": [{"metric": "acc", "minimum": 0.5}]})
    with pytest.raises(ConfigError, match="reference"):
        validate({"relative": [{"metric": "acc", "max_drop": 0.1}], "reference": None})


def _items(correct: list[int]) -> dict[str, float]:
    return {f"q{i}": float(c) for i, c in enumerate(correct)}


PAIRED = {"relative": [{"metric": "t/acc", "max_drop": 0.0}], "reference": "base"}


def test_a_drop_within_noise_passes_and_a_significant_drop_fails():
    reference = [1] * 100 + [0] * 100
    noisy = reference[:]
    noisy[0], noisy[100] = 0, 1  # one item lost, one gained: no evidence of a change
    close = check_all(PAIRED, {"t/acc": 0.5}, {"t/acc": 0.5}, comparisons={"t/acc": compare_paired(noisy, reference)})
    assert close[0].passed and close[0].p_value == 1.0
    damaged = [0] * 40 + reference[40:]  # 40 right answers lost, none gained
    worse = check_all(PAIRED, {"t/acc": 0.3}, {"t/acc": 0.5}, comparisons={"t/acc": compare_paired(damaged, reference)})
    assert not worse[0].passed and worse[0].note == "significant drop"
    assert worse[0].high < 0 and worse[0].n == 200
    assert "FAIL (significant drop)" in results_table(worse)


def test_max_drop_tolerates_a_significant_drop_smaller_than_the_bound():
    reference = [1] * 100 + [0] * 100
    slightly = [0] * 12 + reference[12:]  # -0.06, significant (12 discordant, all one way)
    comparison = {"t/acc": compare_paired(slightly, reference)}
    gates = {"relative": [{"metric": "t/acc", "max_drop": 0.1}], "reference": "base"}
    assert comparison["t/acc"].significant_drop
    assert check_all(gates, {}, {}, comparisons=comparison)[0].passed


def test_min_gain_passes_only_on_a_significant_gain():
    gates = {"relative": [{"metric": "t/acc", "min_gain": 0.0}], "reference": "base"}
    reference = [0] * 150 + [1] * 50
    better = [1] * 40 + reference[40:]
    same = reference[:]
    assert check_all(gates, {}, {}, comparisons={"t/acc": compare_paired(better, reference)})[0].passed
    unchanged = check_all(gates, {}, {}, comparisons={"t/acc": compare_paired(same, reference)})[0]
    assert not unchanged.passed and unchanged.note == "no significant gain"
    # Without per-item scores a gain cannot be shown, whatever the point estimates say.
    assert not check_all(gates, {"t/acc": 0.9}, {"t/acc": 0.1})[0].passed


def test_absolute_minimum_uses_the_lower_end_of_the_interval():
    gates = {"absolute": [{"metric": "t/acc", "min": 0.3}]}
    few = mean_estimate([1, 0, 0])  # 0.33, but on 3 items the interval reaches far below 0.3
    many = mean_estimate([1] * 200 + [0] * 200)
    assert not check_all(gates, {"t/acc": few.value}, None, estimates={"t/acc": few.to_dict()})[0].passed
    assert check_all(gates, {"t/acc": many.value}, None, estimates={"t/acc": many.to_dict()})[0].passed


def test_paired_comparisons_align_items_by_id_and_cover_the_suite_mean():
    reference = {"a": _items([1, 0] * 50), "b": _items([0] * 100)}
    shuffled = dict(reversed(list(_items([1, 0] * 50).items())))  # same scores, another order
    candidate = {"a": shuffled, "b": _items([1] * 30 + [0] * 70)}
    found = estimates.paired(candidate, reference, {"a": "acc", "b": "acc"})
    assert found["a/acc"].difference == 0 and found["a/acc"].p_value == 1.0
    assert found["b/acc"].significant_gain
    mean = found[estimates.SUITE_MEAN]
    assert mean.difference == pytest.approx(0.15) and mean.low > 0 and mean.n == 200


def test_suite_estimates_carry_intervals_and_counts():
    found = estimates.task_estimates({"a": _items([1] * 60 + [0] * 140), "b": _items([1] * 1)}, {"a": "acc", "b": "acc"})
    assert found["a/acc"].n == 200 and found["a/acc"].low < 0.3 < found["a/acc"].high
    assert found[estimates.SUITE_MEAN].value == pytest.approx(0.65)


def _fake_model_artifact(store: ArtifactStore, name: str, megabytes: float):
    with store.create("sft", name, {}, [], name=name) as out:
        (out.dir / "model").mkdir()
        (out.dir / "model" / "model.safetensors").write_bytes(b"\0" * int(megabytes * 2**20))
    return out.artifact


def _gate(outputs, artifact, max_mb):
    return run_entry("evaluate", "stage=gate", f"stage.run.artifact={artifact.path}", "gates.tasks=[]",
                     f"gates.absolute=[{{metric:size_mb,max:{max_mb}}}]", "gates.relative=[]",
                     "gates.reference=null", "gates.promote_as=student", "logger=none", timeout=300)


def test_failing_gate_does_not_promote_and_the_previous_promotion_stays(outputs):
    store = ArtifactStore(outputs / "artifacts")
    good = _fake_model_artifact(store, "small", 1.0)
    bad = _fake_model_artifact(store, "big", 3.0)
    pointer = outputs / "artifacts" / "promoted" / "student.json"

    passed = _gate(outputs, good, 2)
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert store.resolve("promoted:student").path == good.path

    failed = _gate(outputs, bad, 2)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "not promoted" in failed.stderr + failed.stdout
    assert store.resolve("promoted:student").path == good.path
    assert json.loads(pointer.read_text())["artifact"] == good.ref
    gate_results = [json.loads((a.path / "results.json").read_text()) for a in store.artifacts("gate")]
    assert [r["passed"] for r in gate_results] == [True, False]
    assert "FAIL" in (store.artifacts("gate")[-1].path / "table.md").read_text()


def test_the_embedded_gate_reuses_the_pipelines_suite_runs():
    """Same knobs -> same fingerprint: the gate finds the suite artifacts the pipeline steps made."""
    from omegaconf import OmegaConf

    from cogumi.entry import compose_entry
    from cogumi.evaluate.suite import stage_config

    gates = compose_entry("evaluate", ["gates=embedded"]).gates
    tasks = "[" + ",".join(gates.tasks) + "]"
    cli = compose_entry("evaluate", ["stage=suite", "stage.run.model=latest:sft", f"stage.run.limit={gates.limit}",
                                     f"stage.run.tasks={tasks}", f"stage.run.kind={gates.kind}",
                                     f"stage.run.gguf_type={gates.export_type}", f"stage.run.max_gen_toks={gates.max_gen_toks}"])
    from_cli = OmegaConf.to_container(cli.stage, resolve=True)
    built = stage_config(model="latest:sft", kind=gates.kind, tasks=list(gates.tasks), limit=gates.limit,
                         limits=gates.limits, part=gates.part, max_gen_toks=gates.max_gen_toks, gguf_type=gates.export_type)
    assert built == from_cli


def test_the_pipeline_suite_steps_use_the_embedded_gates_knobs():
    """If a step and gates=embedded drift apart, the gate silently evaluates everything again."""
    import shlex

    import yaml

    from cogumi.entry import compose_entry
    from cogumi.paths import PROJECT_ROOT

    gates = compose_entry("evaluate", ["gates=embedded"]).gates
    steps = yaml.safe_load((PROJECT_ROOT / "experiments" / "embedded.yaml").read_text())["pipeline"]["steps"]
    suites = [shlex.split(s)[1:] for s in steps if isinstance(s, str) and s.startswith("evaluate stage=suite")]
    assert suites
    for args in suites:
        run = compose_entry("evaluate", ["experiments=embedded", *args]).stage.run
        assert (run.limit, run.limits, run.max_gen_toks, list(run.tasks), run.part, run.kind, run.gguf_type) == (
            gates.limit, gates.limits, gates.max_gen_toks, list(gates.tasks), gates.part, gates.kind, gates.export_type)


def test_a_suite_run_from_the_gate_fingerprints_like_the_suite_step(monkeypatch, tmp_path):
    """The gate's inner suite must carry every key `evaluate.py stage=suite` fingerprints (teacher too),
    or the gate evaluates both models again instead of finding the pipeline's suite artifacts."""
    from omegaconf import OmegaConf

    from cogumi.artifacts import ArtifactStore
    from cogumi.entry import compose_entry, fingerprint_config
    from cogumi.evaluate import suite
    from cogumi.hardware import HardwareSpec
    from cogumi.stage import StageContext

    gate_cfg = OmegaConf.to_container(compose_entry("evaluate", ["stage=gate", "gates=embedded"]), resolve=True)
    suite_cfg = OmegaConf.to_container(compose_entry("evaluate", ["stage=suite"]), resolve=True)
    gate_ctx = StageContext(stage="gate", store=ArtifactStore(tmp_path), model=None, hardware=HardwareSpec("cpu"),
                            config=gate_cfg, fingerprint_config=fingerprint_config(gate_cfg))
    seen = {}
    monkeypatch.setattr(suite, "run", lambda ctx, **knobs: seen.setdefault("ctx", ctx))
    suite.run_cached(gate_ctx, model="base", kind="gguf", tasks=["cogumi_arc_easy"], limit=5)
    inner = seen["ctx"].fingerprint_config
    assert set(inner) == set(fingerprint_config(suite_cfg))
    assert inner["teacher"] == fingerprint_config(suite_cfg)["teacher"] and inner["stage"]["name"] == "suite"


def test_the_gate_scores_with_the_chat_template_and_export_type_its_gates_file_names(monkeypatch):
    """gates=modifier scores a chat-trained LoRA on chat prompts; an HF side is exported as the file says."""
    from cogumi.evaluate import gate, suite

    seen = []
    monkeypatch.setattr(gate, "locate", lambda ctx, ref: ("hf", "/some/model", None))
    monkeypatch.setattr(suite, "run_cached", lambda ctx, **knobs: seen.append(knobs))
    gates = {"tasks": ["cogumi_bfcl"], "limit": 5, "chat_template": True, "export_type": "BF16"}
    gate.suite_run(None, "base", "gguf", gates, gguf_type=None)
    gate.suite_run(None, "base", "gguf", {**gates, "chat_template": False, "export_type": None}, gguf_type=None)
    assert [(k["chat_template"], k["gguf_type"]) for k in seen] == [(True, "BF16"), (False, "F16")]


def test_a_modifier_gate_takes_its_own_domains_lora_even_when_another_is_newer(tmp_path):
    """A resumed pipeline with two modifiers: `latest:modifier` must not gate the other domain's LoRA."""
    import json

    import pytest

    from cogumi.artifacts import ArtifactStore
    from cogumi.errors import ConfigError
    from cogumi.evaluate.gate import own_domain_lora
    from cogumi.stage import StageContext

    store = ArtifactStore(tmp_path)
    for created, name, domain in (("2026-01-01T00:00:01", "a", "automation"), ("2026-01-01T00:00:02", "b", "reasoning")):
        folder = tmp_path / "modifier" / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"stage": "modifier", "name": name, "created_at": created,
                                                          "modifier": {"domain": domain}}))
    ctx = StageContext(stage="gate", store=store, model=None, hardware=None, config={}, fingerprint_config={})
    assert own_domain_lora(ctx, "latest:modifier", "automation") == "modifier/a"
    assert own_domain_lora(ctx, "latest:modifier", "reasoning") == "modifier/b"
    assert own_domain_lora(ctx, "latest:modifier", None) == "latest:modifier"  # not a modifier gate: as given
    with pytest.raises(ConfigError, match="'reasoning' modifier; this gate is for 'automation'"):
        own_domain_lora(ctx, "modifier/b", "automation")
    with pytest.raises(ConfigError, match="no modifier of domain 'math'"):
        own_domain_lora(ctx, "latest:modifier", "math")
