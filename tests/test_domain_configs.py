"""Every domain file composes into a DomainSpec whose tasks exist; a bad `domain=` fails fast with the choices."""

import pytest
from omegaconf import OmegaConf

from conftest import run_entry
from cogumi.entry import compose_entry
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.harness import PRIMARY
from cogumi.modifiers.domain import domain_from
from cogumi.modifiers.items import TASKS
from cogumi.paths import CONF_DIR

DOMAINS = sorted(p.stem for p in (CONF_DIR / "domain").glob("*.yaml"))


def _domain(name: str) -> dict:
    cfg = compose_entry("train", ["stage=cascade", f"domain={name}"])
    return OmegaConf.to_container(cfg.domain, resolve=True)


@pytest.mark.parametrize("name", DOMAINS)
def test_every_domain_composes_and_names_tasks_that_exist(name):
    spec = domain_from(_domain(name))
    assert spec.name == name and spec.eval_tasks
    for task in spec.eval_tasks:
        assert task in PRIMARY and TASKS[task][0] in offline_data.ROWS
    assert spec.tiers, f"{name}: no teacher tiers"


def test_the_required_domains_exist_and_modifier_domains_have_a_rank():
    assert {"code", "math", "reasoning", "automation", "general"} <= set(DOMAINS)
    for name in ("code", "math", "reasoning", "automation"):
        assert domain_from(_domain(name)).lora_rank >= 1
    assert domain_from(_domain("general")).lora_rank is None


def test_the_cascade_stage_takes_the_domains_tiers_as_a_knob():
    cfg = compose_entry("train", ["stage=cascade", "domain=automation", "teacher=groq"])
    tiers = OmegaConf.to_container(cfg.stage.run.tiers, resolve=True)
    assert [t["kind"] for t in tiers] == ["self", "endpoint", "reference"]
    assert tiers[1]["teacher"]["name"] == "groq"  # the endpoint tier is the `teacher` group's choice


def test_a_domain_naming_a_missing_task_is_rejected_with_its_file():
    broken = _domain("math") | {"eval_tasks": ["cogumi_gsm8k", "cogumi_gsm9k"]}
    with pytest.raises(ConfigError, match=r"conf/domain/math.yaml.*cogumi_gsm9k"):
        domain_from(broken)


def test_a_verifier_that_cannot_check_the_tasks_is_rejected():
    with pytest.raises(ConfigError, match="final_number cannot check.*cogumi_bfcl"):
        domain_from(_domain("automation") | {"verifier": {"kind": "final_number"}})


def test_a_bad_domain_fails_fast_with_the_choices():
    result = run_entry("train", "stage=modifier", "domain=astrology", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "astrology" in result.stderr and "automation" in result.stderr and "math" in result.stderr


@pytest.mark.parametrize("name", [d for d in DOMAINS if d != "general"])
def test_every_modifier_gate_composes_with_its_domain(name):
    """conf/gates/modifier.yaml takes its checks from the domain: own-task gain, other-task drops."""
    cfg = compose_entry("evaluate", ["stage=gate", "gates=modifier", f"domain={name}",
                                     "stage.run.artifact=latest:gguf", "stage.run.lora=latest:modifier"])
    gates = OmegaConf.to_container(cfg.stage.run.gates, resolve=True)
    spec = domain_from(OmegaConf.to_container(cfg.domain, resolve=True))
    assert gates["promote_as"] == f"modifier-{name}" and gates["reference"] == "latest:gguf"
    gained = [c["metric"].split("/")[0] for c in gates["relative"] if "min_gain" in c]
    guarded = [c["metric"].split("/")[0] for c in gates["relative"] if "max_drop" in c]
    assert gained and set(gained) <= set(spec.eval_tasks)
    assert guarded and not set(guarded) & set(spec.eval_tasks)
    assert set(gained + guarded) <= set(gates["tasks"])


def test_the_tool_call_gate_scores_chat_prompts_as_served_and_the_cloze_gates_plain_ones():
    """The automation LoRA learns chat replies: gated on lm-eval's plain prompts it showed 0.01 -> 0.03."""
    def gates(name: str) -> dict:
        cfg = compose_entry("evaluate", ["stage=gate", "gates=modifier", f"domain={name}",
                                         "stage.run.artifact=latest:gguf", "stage.run.lora=latest:modifier"])
        return OmegaConf.to_container(cfg.stage.run.gates, resolve=True)

    assert gates("automation")["chat_template"] is True
    assert gates("reasoning")["chat_template"] is False


def test_the_cascade_clusters_failures_and_augments_only_when_asked():
    """Offline default: clusters on, augmentation off; when on, it asks the `teacher` group's endpoint."""
    cfg = compose_entry("train", ["stage=cascade", "domain=automation", "teacher=groq"])
    run = OmegaConf.to_container(cfg.stage.run, resolve=True)
    assert run["clusters"]["enabled"] is True and run["augment"]["per_cluster"] == 0
    assert run["augment"]["teacher"]["name"] == "groq" and run["augment"]["optional"] is True
