"""Training data: reply-only loss mask via the chat template, packing, resumable order, lr schedule."""

import pytest

from cogumi.train.datamodule import StreamSampler, collate_rows
from cogumi.train.examples import IGNORE, encode_conversation, pack_examples, record_messages
from cogumi.train.module import cosine_with_warmup

CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, of course."},
]


@pytest.fixture(scope="module")
def tokenizer(embedded_model):
    from cogumi.models import load_tokenizer

    return load_tokenizer(embedded_model)


def _labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE])


def test_loss_mask_covers_only_the_replies(tokenizer):
    example = encode_conversation(tokenizer, CHAT, max_len=512)
    trained = _labelled_text(tokenizer, example)
    assert "Paris is the capital." in trained and "Rome, of course." in trained
    assert "France" not in trained and "Italy" not in trained and "user" not in trained
    # Labels equal the inputs where they are set (no shifting here; the model shifts).
    assert all(label in (IGNORE, token) for token, label in zip(example.input_ids, example.labels))
    # The whole sequence is exactly what the tokenizer's own template renders.
    assert tokenizer.decode(example.input_ids) == tokenizer.apply_chat_template(CHAT, tokenize=False)


def test_reply_includes_the_end_of_turn_so_the_model_learns_to_stop(tokenizer):
    example = encode_conversation(tokenizer, CHAT[:2], max_len=512)
    rendered = tokenizer.apply_chat_template(CHAT[:2], tokenize=False)
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert _labelled_text(tokenizer, example) == rendered[len(prompt):]


def test_truncation_without_reply_tokens_drops_the_example(tokenizer):
    assert encode_conversation(tokenizer, CHAT[:2], max_len=5) is None


def test_instruction_response_records_become_one_exchange():
    messages = record_messages({"id": "x", "instruction": "Hi", "response": "Hello"})
    assert messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert record_messages({"instruction": "ignored", "response": "ignored", "messages": CHAT}) == CHAT


def test_packing_keeps_every_token_and_restarts_positions(tokenizer):
    examples = [encode_conversation(tokenizer, CHAT[:2], 512), encode_conversation(tokenizer, CHAT, 512)] * 3
    rows = pack_examples(examples, seq_len=128, seed=0)
    assert sum(len(r.input_ids) for r in rows) == sum(len(e.input_ids) for e in examples)
    assert all(len(r.input_ids) <= 128 for r in rows) and len(rows) < len(examples)
    for row in rows:
        starts = [i for i, p in enumerate(row.position_ids) if p == 0]
        assert all(row.labels[i] == IGNORE for i in starts)  # never predict across an example boundary
    batch = collate_rows(rows[:2], pad_token_id=0)
    assert batch["real_tokens"] == len(rows[0].input_ids) + len(rows[1].input_ids)
    for i, row in enumerate(rows[:2]):  # padding is never a target and is its own position segment
        assert (batch["labels"][i, len(row.input_ids):] == IGNORE).all()
        assert batch["position_ids"][i, len(row.input_ids):].tolist()[:1] in ([], [0])


def test_stream_sampler_resumes_with_the_same_order():
    full = list(StreamSampler(n=7, total=20, seed=3))
    assert len(full) == 20 and sorted(full[:7]) == list(range(7))  # every row once per pass
    resumed = StreamSampler(n=7, total=20, seed=3)
    resumed.skip = 8
    assert list(resumed) == full[8:]
    assert list(resumed) == full  # the skip applies once


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    values = [cosine_with_warmup(s, warmup=4, total=20, floor=0.1) for s in range(21)]
    assert values[0] < values[3] < 1.0 and max(values) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[4:], values[5:]))
    assert values[20] == pytest.approx(0.1)


@pytest.mark.parametrize(("override", "key"), [("stage.run.max_steps=0", "max_steps"), ("stage.run.lr=0", "lr"),
                                               ("stage.run.lora_rank=0", "lora_rank")])
def test_bad_training_knobs_are_config_errors_before_any_work(override, key, outputs):
    from hydra.utils import instantiate

    from cogumi.entry import build_context, compose_entry
    from cogumi.errors import ConfigError

    cfg = compose_entry("train", ["stage=sft", "logger=none", override])
    with pytest.raises(ConfigError, match=key):  # no dataset exists here: the knob check comes first
        instantiate(cfg.stage.run)(build_context(cfg, "sft"))


def test_a_dataset_without_splits_is_named_in_the_error(outputs):
    from hydra.utils import instantiate

    from cogumi.artifacts import ArtifactStore
    from cogumi.entry import build_context, compose_entry
    from cogumi.errors import ConfigError

    store = ArtifactStore(outputs / "artifacts")
    with store.create("curate", "f" * 64, {}, []) as out:
        (out.dir / "report.json").write_text("{}")
    cfg = compose_entry("train", ["stage=sft", "logger=none"])
    with pytest.raises(ConfigError, match="train.jsonl"):
        instantiate(cfg.stage.run)(build_context(cfg, "sft"))


def test_data_parallel_ranks_split_each_step_of_the_one_stream():
    """Rank r takes stream positions r, r+2, ...: a step of 2 ranks × batch 2 is a 1-process batch of 4."""
    single = list(StreamSampler(n=7, total=24, seed=3))
    ranks = []
    for rank in (0, 1):
        sampler = StreamSampler(n=7, total=24, seed=3)
        sampler.rank, sampler.world = rank, 2
        ranks.append(list(sampler))
        assert len(sampler) == 12
    for step in range(6):
        together = ranks[0][2 * step:2 * step + 2] + ranks[1][2 * step:2 * step + 2]
        assert sorted(together) == sorted(single[4 * step:4 * step + 4])
    # Resuming after 2 steps (8 global rows) continues each rank where it stopped.
    resumed = StreamSampler(n=7, total=24, seed=3)
    resumed.rank, resumed.world, resumed.skip = 1, 2, 8
    assert list(resumed) == ranks[1][4:]
