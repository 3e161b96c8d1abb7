"""A domain as `conf/domain/<d>.yaml` names it, checked against the code it drives.

Tasks are mined on their `mine` half and gated on their `gate` half (offline_data), so no item is
both; the verifier must fit every task's key; tiers name kinds the cascade knows.
"""

from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from cogumi.errors import ConfigError
from cogumi.evaluate.harness import PRIMARY
from cogumi.modifiers.items import TASKS, verifier_of
from cogumi.modifiers.verifiers import KINDS as VERIFIER_KINDS
from cogumi.teachers.spec import TeacherSpec

TIER_KINDS = ("reference", "self", "endpoint")
SOURCES = ("mining", "feedback")


@dataclass(frozen=True)
class DomainSpec:
    name: str
    eval_tasks: tuple[str, ...]  # lm-eval tasks: mined on `mine_part`, gated on `gate_part`
    verifier: dict  # {kind, ...}: cogumi.modifiers.verifiers
    sources: tuple[str, ...]  # what the cascade works on: mining (the mining half's failures), feedback
    data_sources: tuple[str, ...]  # curated instruction sources of the domain (data.sources names)
    tiers: tuple[dict, ...]  # the teacher cascade, cheapest first
    budget: dict  # mine_items (items the student is tried on), max_records (kept answers)
    lora_rank: int | None  # None: the domain carries no modifier (general)
    gate: dict | None = None  # checks of its modifier gate (conf/gates/modifier.yaml): tasks, limits, relative
    mine_part: str = "mine"
    gate_part: str = "gate"
    max_tokens: int = 128  # reply length for the domain's answers


def plain(value):
    """The dicts and lists a stage works on, from the config nodes the entry point hands it."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_tiers(tiers, where: str) -> None:
    for i, tier in enumerate(tiers):
        kind = tier.get("kind") if isinstance(tier, dict) else None
        if kind not in TIER_KINDS:
            raise ConfigError(f"{where}.tiers[{i}]: kind {kind!r} is not one of {TIER_KINDS}")
        if kind == "endpoint" and not isinstance(tier.get("teacher"), (dict, TeacherSpec)):
            raise ConfigError(f"{where}.tiers[{i}]: an endpoint tier needs `teacher:` (a conf/teacher entry)")


def check_gate(spec: DomainSpec, where: str) -> None:
    """The modifier gate's checks name gated tasks; the domain's own tasks carry a min_gain check."""
    tasks = list(spec.gate.get("tasks") or [])
    if unknown := [t for t in tasks if t not in PRIMARY]:
        raise ConfigError(f"{where}: gate.tasks {unknown} do not exist; known: {sorted(PRIMARY)}")
    checks = list(spec.gate.get("relative") or [])
    if stray := [c["metric"] for c in checks if c["metric"].split("/")[0] not in tasks]:
        raise ConfigError(f"{where}: gate.relative checks {stray}, whose tasks are not in gate.tasks {tasks}")
    gained = {c["metric"].split("/")[0] for c in checks if "min_gain" in c}
    if not gained or not gained <= set(spec.eval_tasks):
        raise ConfigError(f"{where}: gate.relative needs min_gain checks on the domain's own tasks "
                          f"{list(spec.eval_tasks)} only (has {sorted(gained)})")


def domain_from(config: dict) -> DomainSpec:
    """DomainSpec from the resolved `domain` node; every mistake names conf/domain/<name>.yaml and the key."""
    config = dict(plain(config))
    name = config.get("name", "?")
    where = f"conf/domain/{name}.yaml"
    known = set(DomainSpec.__dataclass_fields__)
    if unknown := set(config) - known:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        spec = DomainSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
    if missing := [t for t in spec.eval_tasks if t not in PRIMARY or t not in TASKS]:
        raise ConfigError(f"{where}: eval_tasks {missing} do not exist; known: {sorted(set(PRIMARY) & set(TASKS))}")
    if (spec.mine_part, spec.gate_part) != ("mine", "gate"):
        raise ConfigError(f"{where}: mine_part/gate_part must be mine/gate (the halves never overlap)")
    kind = spec.verifier.get("kind")
    if kind not in VERIFIER_KINDS:
        raise ConfigError(f"{where}: verifier.kind {kind!r} is not one of {VERIFIER_KINDS}")
    if kind != "judge" and (wrong := [t for t in spec.eval_tasks if verifier_of(t) != kind]):
        raise ConfigError(f"{where}: verifier {kind} cannot check {wrong} "
                          f"(their keys fit {sorted({verifier_of(t) for t in wrong})})")
    check_tiers(spec.tiers, where)
    if bad := set(spec.sources) - set(SOURCES):
        raise ConfigError(f"{where}: sources {sorted(bad)} unknown; known: {SOURCES}")
    if spec.gate is not None:
        check_gate(spec, where)
    if spec.lora_rank is not None and spec.lora_rank < 1:
        raise ConfigError(f"{where}: lora_rank={spec.lora_rank} must be >= 1 (or null: no modifier)")
    return spec
