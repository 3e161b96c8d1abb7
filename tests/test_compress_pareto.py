"""Pareto front and knee of sweep results, and the report files a sweep writes."""

import pytest

from cogumi.compress.pareto import Point, analyse, knee, pareto_front, write_report


def _points():
    # (size, quality): a convex trade-off with a clear bend at size 3, plus two dominated trials.
    raw = [("a", 1.0, 10.0), ("b", 2.0, 4.0), ("c", 3.0, 1.2), ("d", 4.0, 1.0), ("e", 5.0, 0.9),
           ("x", 3.5, 5.0), ("y", 5.0, 2.0)]
    return [Point(label, size, quality, f"sweep/{label}") for label, size, quality in raw]


def test_front_excludes_dominated_points():
    front = pareto_front(_points())
    assert [p.label for p in front] == ["a", "b", "c", "d", "e"]


def test_knee_is_the_bend():
    assert knee(pareto_front(_points())).label == "c"


def test_knee_of_short_fronts_and_ties():
    two = [Point("s", 1, 2, ""), Point("l", 2, 1, "")]
    assert knee(two).label == "s"
    assert knee([]) is None
    same = [Point("p", 1, 1, ""), Point("q", 1, 1, "")]
    assert len(pareto_front(same)) == 2  # identical trials do not dominate each other


def test_report_files(tmp_path):
    points = analyse(_points())
    assert sum(p.knee for p in points) == 1
    write_report(points, tmp_path, "size_mb", "kl_mean", "test sweep")
    table = (tmp_path / "pareto.md").read_text()
    assert "| c | 3.000 | 1.20000 | yes | **knee** |" in table
    assert "| x | 3.500 | 5.00000 |  |  |" in table
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("preset", ["sparsity", "quant_type"])
def test_sweep_presets_name_their_own_stage_and_report_on_it(preset):
    import yaml

    from cogumi.entry import compose_entry
    from cogumi.paths import PROJECT_ROOT

    cfg = compose_entry("compress", [f"sweeps={preset}"])
    assert cfg.stage.name.endswith("_sweep") and cfg.stage.area == "compress"
    preset_yaml = yaml.safe_load((PROJECT_ROOT / "sweeps" / f"{preset}.yaml").read_text())
    callback = preset_yaml["hydra"]["callbacks"]["pareto"]
    assert callback["stage"] == cfg.stage.name
    # Multi-objective: Optuna optimises exactly the report's (quality, size), one direction each.
    assert list(cfg.optimized_metric) == [callback["quality_metric"], callback["size_metric"]]
    assert preset_yaml["hydra"]["sweeper"]["direction"] == ["minimize", "minimize"]


def test_report_marks_optunas_front_over_this_sweeps_trials_only(tmp_path):
    """Two trials in the sweep folder (a third artifact elsewhere is not read); Optuna's best_trials
    (optimization_results.yaml) decide the front, even where a recomputed front would differ."""
    import json

    from omegaconf import OmegaConf

    from cogumi.compress.pareto import ParetoReport

    for num, (sparsity, kl, size) in enumerate([(0.5, 0.1, 70.0), (0.7123456789, 0.4, 40.0)]):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"sparsity": sparsity, "stage": {"run": {"sparsity": "${sparsity}"}}}),
                       job / ".hydra" / "config.yaml")
        (job / "trial.json").write_text(json.dumps({"artifact": f"prune_sweep/{num}",
                                                    "metrics": {"kl_mean": kl, "nonzero_params_m": size}}))
    OmegaConf.save(OmegaConf.create({"name": "optuna", "solutions": [{"params": {"sparsity": 0.5}, "values": [0.1, 70.0]}]}),
                   tmp_path / "optimization_results.yaml")
    report = ParetoReport("prune_sweep", "nonzero_params_m", "kl_mean", ["stage.run.sparsity"])
    report.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    rows = {p["label"]: p for p in json.loads((tmp_path / "pareto.json").read_text())}
    assert set(rows) == {"0.5", "0.712"}  # Optuna's floats, rounded for people
    assert rows["0.5"]["on_front"] and not rows["0.712"]["on_front"]
