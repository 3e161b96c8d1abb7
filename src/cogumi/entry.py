"""What the four `@hydra.main` entry points share: early override checks and the stage task wrapper.

User mistakes (a bad override, a stage run from the wrong entry, an unknown stage knob) end in one
line on stderr and exit code 2, before any model is loaded.
"""

import inspect
import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from cogumi.errors import CogumiError, ConfigError
from cogumi.paths import CONF_DIR, PROJECT_ROOT, cache_dir, outputs_dir

log = logging.getLogger("cogumi")

TRIAL_RECORD = "trial.json"  # written into each multirun job's folder

# `${cogumi:cache}` etc. in conf/paths: one source of truth for where things live (env-overridable).
_PATHS = {"root": lambda: PROJECT_ROOT, "cache": cache_dir, "outputs": outputs_dir}
OmegaConf.register_new_resolver("cogumi", lambda key: str(_PATHS[key]()), replace=True)

# Hydra flags whose next argument is a value, not an override.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                     "--config-dir", "-cd", "--info", "--experimental-rerun"}


def _override_args(argv: list[str]) -> list[str]:
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            args.append(arg)
    return args


def compose_entry(entry: str, overrides: list[str]):
    """The entry's config as Hydra would build it (used by the checks, the pipeline and the tests)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name=entry):
        return compose(config_name=entry, overrides=overrides)


def check_stage_area(cfg, entry: str) -> None:
    area = cfg.stage.get("area")
    if area != entry:
        valid = ", ".join(sorted(stages_of(entry))) or "none yet"
        raise ConfigError(f"stage '{cfg.stage.name}' runs from {area}.py, not {entry}.py; "
                          f"{entry}.py stages: {valid}")


def stages_of(entry: str) -> list[str]:
    import yaml

    return [p.stem for p in (CONF_DIR / "stage").glob("*.yaml")
            if yaml.safe_load(p.read_text()).get("area") == entry]


def exit_on_bad_overrides(entry: str, argv: list[str] | None = None) -> None:
    """Compose once with the command's overrides (sweep values aside) and fail fast on any error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = _override_args(sys.argv[1:] if argv is None else argv)
    try:
        parsed = OverridesParser.create().parse_overrides(args)
        plain = [arg for arg, o in zip(args, parsed) if not o.is_sweep_override()]
        cfg = compose_entry(entry, plain)
        check_stage_area(cfg, entry)
    except Exception as err:  # Hydra raises several types; all of them are the user's override here
        # Hydra's messages span lines and end with the whole search path: keep the part that helps.
        message = " ".join(str(err).split("Config search path")[0].split())
        print(f"{entry}.py: bad configuration: {message}", file=sys.stderr)
        sys.exit(2)


def _check_signature(stage_fn, stage_name: str) -> None:
    """Unknown or missing stage knobs are config mistakes; catch them before the stage starts."""
    func = stage_fn.func
    try:
        inspect.signature(func).bind(None, *stage_fn.args, **stage_fn.keywords)
    except TypeError as err:
        raise ConfigError(f"conf/stage/{stage_name}.yaml does not fit {func.__module__}.{func.__name__}: {err}")


def fingerprint_config(resolved: dict) -> dict:
    """The config an artifact's fingerprint covers. Evaluate stages may call the `teacher` group
    (cluster labels, judging), so a different `teacher=` must not reuse their old artifact."""
    keys = ("stage", "model", "hardware") + (("teacher",) if resolved["stage"].get("area") == "evaluate" else ())
    return {k: resolved[k] for k in keys if k in resolved}


def build_context(cfg, stage_name: str):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from cogumi.artifacts import ArtifactStore
    from cogumi.stage import StageContext

    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    return StageContext(
        stage=stage_name,
        store=ArtifactStore(cfg.paths.artifacts),
        model=instantiate(cfg.model),
        hardware=instantiate(cfg.hardware),
        config=resolved,
        fingerprint_config=fingerprint_config(resolved),
        tracker=instantiate(cfg.logger),
        force=bool(cfg.force),
    )


def run_stage(cfg, entry: str):
    """Task wrapper: check, build the context, run the stage, log metrics, always close the tracker.

    Returns `cfg.optimized_metric` of the artifact when set, so Optuna sweeps need no glue code.
    """
    from hydra.utils import instantiate

    stage_name = cfg.stage.name
    tracker = None
    try:
        check_stage_area(cfg, entry)
        stage_fn = instantiate(cfg.stage.run)
        _check_signature(stage_fn, stage_name)
        ctx = build_context(cfg, stage_name)
        tracker = ctx.tracker
        tracker.start(name=stage_name, group=entry, config=ctx.config)
        started = time.time()
        artifact = stage_fn(ctx)
        tracker.log(artifact.metrics)
        log.info("%s done in %.1f s -> %s", stage_name, time.time() - started, artifact.path)
        log.info("metrics: %s", artifact.metrics)
    except CogumiError as err:
        log.error("%s: %s", type(err).__name__, err)
        sys.exit(err.exit_code)
    finally:
        if tracker is not None:
            tracker.finish()
    _record_trial(artifact)
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    # A list of metrics is a multi-objective sweep (the preset lists one `direction` per metric).
    return [artifact.metrics[m] for m in metric] if OmegaConf.is_list(metric) else artifact.metrics[metric]


def _record_trial(artifact) -> None:
    """In a multirun, leave the job's artifact and metrics in its Hydra folder: a sweep's report then
    reads exactly its own trials (cached ones included), whichever launcher ran them."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRIAL_RECORD).write_text(json.dumps({"artifact": artifact.ref, "metrics": artifact.metrics}))
