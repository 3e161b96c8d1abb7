"""The teacher cascade: each tier sees only what the earlier ones left unsolved; wrong answers never enter the data."""

import json
import re
from dataclasses import dataclass, field

import pytest

from cogumi.modifiers.feedback import read_feedback
from cogumi.modifiers.items import DomainItem
from cogumi.modifiers.verifiers import Verifier
from cogumi.teachers.cascade import run_cascade
from cogumi.teachers.tiers import Candidates, EndpointTier, ReferenceTier

MBPP_TESTS = {"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0", "setup": "", "prefix": ""}


@dataclass
class FixedTier:
    """A tier whose answers are given (a teacher that is always wrong, or always right)."""

    replies: dict
    name: str = "fixed"
    seen: list = field(default_factory=list)

    def answers(self, item) -> Candidates:
        self.seen.append(item.id)
        return Candidates([self.replies.get(item.id, "")], tokens=3)


def math_item(i: int, gold: str, reference: str | None = None) -> DomainItem:
    return DomainItem(f"m/{i}", "cogumi_gsm8k", f"What is {gold}?", gold, reference)


def test_each_tier_sees_only_what_the_earlier_ones_left_unsolved():
    items = [math_item(0, "4", "2 + 2 = 4. The answer is 4."), math_item(1, "7"), math_item(2, "9", "The answer is 9."),
             math_item(3, "12")]
    reference, second = ReferenceTier(), FixedTier({"m/1": "The answer is 7.", "m/3": "The answer is 13."})
    kept, funnel, unsolved = run_cascade(items, [reference, second], Verifier("final_number"))
    assert reference.seen == ["m/0", "m/1", "m/2", "m/3"]
    assert second.seen == ["m/1", "m/3"]  # m/0 and m/2 were solved by the reference tier
    assert [(k.item.id, k.tier) for k in kept] == [("m/0", "reference"), ("m/2", "reference"), ("m/1", "fixed")]
    assert [i.id for i in unsolved] == ["m/3"]  # 13 is not 12: never kept
    assert [(r.attempted, r.solved, r.kept) for r in funnel] == [(4, 2, 2), (2, 1, 1)]


def test_a_wrong_number_never_enters_the_data():
    items = [math_item(i, str(i * 10)) for i in range(5)]
    wrong = FixedTier({f"m/{i}": f"The answer is {i * 10 + 1}." for i in range(5)})
    kept, funnel, unsolved = run_cascade(items, [wrong], Verifier("final_number"))
    assert kept == [] and len(unsolved) == 5 and funnel[0].solved == 0


def test_code_that_fails_its_tests_never_enters_the_data():
    items = [DomainItem(f"c/{i}", "cogumi_mbpp", "Write add(a, b).", MBPP_TESTS) for i in range(3)]
    tier = FixedTier({"c/0": "```python\ndef add(a, b):\n    return a - b\n```",  # wrong
                      "c/1": "```python\ndef add(a, b):\n    return a + b\n```",  # right
                      "c/2": "def add(a, b) return a + b"})  # does not parse
    kept, _, unsolved = run_cascade(items, [tier], Verifier("unit_tests", timeout_s=10))
    assert [k.item.id for k in kept] == ["c/1"]
    assert [i.id for i in unsolved] == ["c/0", "c/2"]


def test_the_budget_caps_what_is_kept_not_what_is_verified():
    items = [math_item(i, "1", "The answer is 1.") for i in range(4)]
    kept, funnel, _ = run_cascade(items, [ReferenceTier()], Verifier("final_number"), max_records=2)
    assert len(kept) == 2 and funnel[0].solved == 4 and funnel[0].kept == 2


def test_feedback_lines_malformed_ones_are_quarantined_with_their_line(tmp_path):
    path = tmp_path / "feedback.jsonl"
    lines = [
        {"time": "t", "domain": "math", "prompt": "2+2?", "rejected": "5", "answer": "The answer is 4.",
         "answer_route": "user"},
        "{not json",
        {"time": "t", "domain": "math", "prompt": "3+3?", "rejected": "7", "answer": None, "answer_route": "base"},
        {"time": "t", "domain": "code", "prompt": "x", "rejected": "y", "answer": None, "answer_route": "base"},
        {"time": "t", "domain": "math", "rejected": "no prompt"},
        ["a", "list"],
    ]
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    found = read_feedback(path, "math")
    assert [i.id for i, _, _ in found.answered] == ["feedback/1"]
    assert [i.id for i in found.unanswered] == ["feedback/3"]
    assert [q["line"] for q in found.quarantined] == [2, 5, 6]
    assert found.other_domains == 1
    assert read_feedback(tmp_path / "absent.jsonl", "math").answered == []


def test_feedback_without_a_key_is_checked_for_form():
    item = DomainItem("feedback/1", None, "call the weather tool for Paris", None)
    verifier = Verifier("tool_call")
    assert verifier.check(item, "get_weather(city='Paris')").passed
    assert not verifier.check(item, "I cannot call tools, sorry.").passed


@pytest.mark.slow
def test_a_local_server_tier_gets_only_the_unsolved_items(local_teacher, tmp_path):
    """The loopback OpenAI-compatible server is a real tier: its ledger shows exactly the unsolved items."""
    items = [math_item(0, "4", "The answer is 4."), math_item(1, "6"), math_item(2, "8", "The answer is 8."),
             math_item(3, "10")]
    ledger = tmp_path / "ledger.jsonl"
    reference = ReferenceTier()
    server = EndpointTier(local_teacher, ledger, n=1, max_tokens=24)
    kept, funnel, unsolved = run_cascade(items, [reference, server], Verifier("final_number"))
    assert server.seen == ["m/1", "m/3"]
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(entries) == 2 and all(e["teacher"] == "local-test" for e in entries)
    assert funnel[1].attempted == 2 and funnel[1].tokens == sum(e["input_tokens"] + e["output_tokens"] for e in entries)
    assert funnel[1].cost_usd == pytest.approx(sum(e["cost_usd"] for e in entries))
    for k in kept:  # whatever the 135M server said, only verified answers were kept
        assert Verifier("final_number").check(k.item, k.answer).passed


def test_an_unreachable_optional_tier_passes_its_items_on(tmp_path):
    from cogumi.teachers.spec import TeacherSpec

    spec = TeacherSpec(name="nowhere", base_url="http://127.0.0.1:9/v1", model="m")
    items = [math_item(0, "4"), math_item(1, "6", "The answer is 6.")]
    tiers = [EndpointTier(spec, None, optional=True, timeout_s=5), ReferenceTier()]
    kept, funnel, unsolved = run_cascade(items, tiers, Verifier("final_number"))
    assert funnel[0].status == "unavailable" and funnel[0].attempted == 0
    assert tiers[1].seen == ["m/0", "m/1"] and [k.item.id for k in kept] == ["m/1"]


@pytest.mark.parametrize("task", ["cogumi_bfcl", "cogumi_gsm8k", "cogumi_mbpp", "cogumi_humaneval",
                                  "cogumi_arc_challenge", "cogumi_mmlu", "cogumi_truthfulqa"])
def test_the_reference_tier_answers_pass_and_a_corrupted_one_does_not(task):
    """The set's own answers, as the reference tier writes them, pass the task's verifier; tampered ones fail."""
    from cogumi.modifiers.items import TASKS, load_items

    verifier = Verifier(TASKS[task][2])
    items = load_items(task, "mine", 5)
    assert len(items) == 5 and all(verifier.check(i, i.reference).passed for i in items)
    if task != "cogumi_truthfulqa":  # (an open answer has no single wrong twin)
        wrong = {"cogumi_bfcl": lambda r: r.replace("(", "_v2(", 1), "cogumi_gsm8k": lambda r: re.sub(r"answer is (-?\d+)", lambda m: f"answer is {int(m.group(1)) + 1}", r),
                 "cogumi_mbpp": lambda r: r.replace("return", "return None and", 1),
                 "cogumi_humaneval": lambda r: "return None and".join(r.rsplit("return", 1))}.get(
            task, lambda r: ("B" if r[0] == "A" else "A") + r[1:])
        assert not any(verifier.check(i, wrong(i.reference)).passed for i in items)


def test_the_report_headline_counts_only_the_tiers_that_ran():
    from cogumi.modifiers.cascade_data import headline
    from cogumi.teachers.cascade import FunnelRow

    items = [math_item(i, str(i), reference=f"The answer is {i}.") for i in range(4)]
    wrong, right = FixedTier({"m/0": "The answer is 0."}, name="self"), ReferenceTier()
    kept, funnel, _ = run_cascade(items, [wrong, right], Verifier("final_number"))
    rows = [r.to_dict() for r in funnel] + [FunnelRow("local", status="unavailable").to_dict()]
    lines = headline("math", 10, 6, rows, len(kept))
    assert lines == ["math: 10 mined items, student solved 6", "kept 4: self 1/4, reference 3/3"]


# ---- failure clusters and LLM2LLM augmentation ------------------------------------------------------
def _topic_embed(texts):
    """Stand-in for MiniLM: apples and trains far apart, so the clusters are known."""
    import numpy as np

    return np.array([[1.0, 0.0] if "apple" in t else [0.0, 1.0] for t in texts]) + \
        np.random.default_rng(0).normal(0, 0.01, (len(texts), 2))


def _fruit_and_trains() -> list[DomainItem]:
    apples = [DomainItem(f"a/{i}", "cogumi_gsm8k", f"Sam has {i} apple crates; how many apples?", str(i),
                         f"The answer is {i}." if i % 2 else None, question=f"Sam has {i} apple crates")
              for i in range(4)]
    trains = [DomainItem(f"t/{i}", "cogumi_gsm8k", f"A train goes {i} km; how far?", str(i), None,
                         question=f"A train goes {i} km") for i in range(3)]
    return apples + trains


def test_failures_cluster_by_topic_and_the_funnel_is_told_per_cluster():
    from cogumi.modifiers.failure_clusters import cluster_failures, cluster_funnel, cluster_table

    items = _fruit_and_trains()
    groups, silhouettes = cluster_failures(items, 2, 4, embed=_topic_embed)
    assert sorted(sorted(i.id[0] for i in g.items) for g in groups) == [["a"] * 4, ["t"] * 3]
    assert max(silhouettes, key=silhouettes.get) == "2"
    reference, fixed = ReferenceTier(), FixedTier({"t/0": "The answer is 0.", "t/1": "The answer is 5."}, name="local")
    _, funnel, unsolved = run_cascade(items, [reference, fixed], Verifier("final_number"))
    rows = cluster_funnel(groups, funnel, unsolved)
    apples, trains = (next(r for r in rows if f"{kind}/0" in r["item_ids"]) for kind in "at")
    assert apples["solved"] == {"reference": 2, "local": 0} and apples["unsolved"] == 2
    assert trains["solved"] == {"reference": 0, "local": 1} and trains["unsolved"] == 2  # 5 is not 1
    assert apples["items"] == 4 and apples["examples"][0] == "Sam has 0 apple crates" and "apple" in apples["name"]
    table = cluster_table(rows)
    assert "reference solved" in table and len(table.splitlines()) == 2 + len(rows)


@dataclass
class ScriptedClient:
    """A teacher whose replies are given per request (in order); records what it was asked."""

    replies: list
    sent: list = field(default_factory=list)

    @property
    def spec(self):
        from cogumi.teachers.spec import TeacherSpec

        return TeacherSpec(name="scripted", base_url="http://unused/v1", model="m")

    def chat(self, messages, **_):
        from cogumi.teachers.client import TeacherReply

        self.sent.append(messages[0]["content"])
        return TeacherReply(self.replies[len(self.sent) - 1], 10, 20, 0.0, 0.0, "m")


def test_augmentation_keeps_only_new_items_that_pass_the_verifier():
    from cogumi.modifiers.failure_clusters import FailureCluster
    from cogumi.teachers.augment import augment_clusters

    items = _fruit_and_trains()
    clusters = [FailureCluster(0, "apples", items[:4]), FailureCluster(1, "trains", items[4:])]
    reply = json.dumps({"items": [{"prompt": "Ann has 3 apple bags of 2; how many?", "answer": "The answer is 6."},
                                  {"prompt": "Bo has apples; how many?", "answer": "I am not sure."},  # no number
                                  {"prompt": items[0].prompt, "answer": "The answer is 0."}]})  # a known prompt
    cut_off = '{"items": [{"prompt": "A train of 4 cars, 5 seats each: seats?", "answer": "The answer is 20."}, {"pro'
    client = ScriptedClient([reply, cut_off])
    kept, rows = augment_clusters(client, clusters, 3, Verifier("final_number"), examples=2,
                                  known_prompts={i.prompt for i in items})
    assert [k.item.prompt for k in kept] == ["Ann has 3 apple bags of 2; how many?",
                                             "A train of 4 cars, 5 seats each: seats?"]
    assert all(k.tier == "augment:scripted" and k.item.gold is None and k.verified == "form" for k in kept)
    assert [(r.generated, r.duplicates, r.rejected, r.kept) for r in rows] == [(3, 1, 1, 1), (1, 0, 0, 1)]
    assert rows[0].examples == ["a/1", "a/3"]  # failures with a reference answer are shown first
    assert "The answer is 1." in client.sent[0] and "train" not in client.sent[0]


def test_augmentation_with_an_unreachable_teacher_adds_nothing(tmp_path):
    from cogumi.modifiers.failure_clusters import FailureCluster
    from cogumi.teachers.augment import augment_clusters
    from cogumi.teachers.client import TeacherClient
    from cogumi.teachers.spec import TeacherSpec

    client = TeacherClient(TeacherSpec(name="nowhere", base_url="http://127.0.0.1:9/v1", model="m"), timeout_s=5,
                           max_retries=0)
    items = _fruit_and_trains()
    kept, rows = augment_clusters(client, [FailureCluster(0, "a", items[:4]), FailureCluster(1, "t", items[4:])], 2,
                                  Verifier("final_number"))
    assert kept == [] and [r.status for r in rows] == ["unavailable", "unavailable"]


@pytest.mark.slow
def test_augmentation_through_a_local_server_asks_only_for_failure_clusters(local_teacher, tmp_path):
    """Real loopback server: only the student's failures are clustered and shown; new items are verified."""
    from cogumi.modifiers.cascade_data import student_pass
    from cogumi.modifiers.failure_clusters import cluster_failures
    from cogumi.teachers.augment import augment_clusters
    from cogumi.teachers.client import TeacherClient

    class Student:  # answers the apple questions right, the train questions wrong
        def as_chat(self, prompt):
            return prompt

        def sample(self, prompt, n, temperature, max_tokens, stop, seed):
            number = re.search(r"\d+", prompt).group()
            return [f"The answer is {number if 'apple' in prompt else number + '1'}."]

        def tokens(self, text):
            return len(text.split())

    class Recording(TeacherClient):
        sent: list = []

        def chat(self, messages, **kw):
            self.sent.append(messages[0]["content"])
            return super().chat(messages, **kw)

    items = _fruit_and_trains() + [DomainItem(f"w/{i}", "cogumi_gsm8k", f"Water fills {i} tanks; litres?", str(i),
                                              f"The answer is {i}.", question=f"Water fills {i} tanks")
                                   for i in range(2, 5)]
    verifier = Verifier("final_number")
    failures, row = student_pass(Student(), items, verifier, 16, [], 0)
    assert row.solved == 4 and {i.id[0] for i in failures} == {"t", "w"}
    groups, _ = cluster_failures(failures, 2, 3)
    ledger = tmp_path / "ledger.jsonl"
    client = Recording(local_teacher, ledger_path=ledger, timeout_s=900, max_retries=0)  # a busy 2-core box
    schema = {"type": "object", "required": ["items"], "properties": {"items": {
        "type": "array", "maxItems": 2, "items": {"type": "object", "required": ["prompt", "answer"], "properties": {
            "prompt": {"type": "string", "maxLength": 120}, "answer": {"type": "string", "maxLength": 40}}}}}}
    kept, rows = augment_clusters(client, groups, 2, verifier, examples=2, max_tokens=200,
                                  known_prompts={i.prompt for i in items},
                                  response_format={"type": "json_object", "schema": schema})
    shown = {e for r in rows for e in r.examples}
    assert shown and shown <= {i.id for i in failures}
    assert len(client.sent) == len(groups) == len(ledger.read_text().splitlines())
    assert not any("apple" in text for text in client.sent)  # solved items are never sent
    assert all(r.generated == r.duplicates + r.rejected + r.kept for r in rows)
    for k in kept:  # whatever the 135M server wrote, only verified items are kept
        assert verifier.check(k.item, k.answer).passed and k.item.prompt not in {i.prompt for i in items}
