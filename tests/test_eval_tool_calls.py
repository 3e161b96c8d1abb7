"""BFCL answers: calls parsed from Python or JSON, matched against possible answers like BFCL's AST checker."""

import json

import pytest

from cogumi.evaluate.offline_data import bfcl_rows
from cogumi.evaluate.tool_calls import parse_calls, score_reply

KEY = [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]


@pytest.mark.parametrize("reply", [
    "calculate_triangle_area(base=10, height=5)",
    " calculate_triangle_area(base=10, height=5, unit='units')",
    "[calculate_triangle_area(base=10.0, height=5)]",
    '{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}',
    'Sure: {"calculate_triangle_area": {"base": 10, "height": 5}}',
])
def test_right_calls_match(reply):
    assert score_reply(reply, KEY)


@pytest.mark.parametrize("reply", [
    "calculate_triangle_area(base=10)",  # required argument missing
    "calculate_triangle_area(base=10, height=6)",  # wrong value
    "calculate_triangle_area(base=10, height=5, colour='red')",  # unknown argument
    "triangle_area(base=10, height=5)",  # wrong function
    "The area is 25.",  # no call
])
def test_wrong_calls_do_not_match(reply):
    assert not score_reply(reply, KEY)


def test_dotted_names_parse():
    assert parse_calls("math.factorial(number=5)") == [{"name": "math.factorial", "arguments": {"number": 5}}]


def test_shipped_items_have_answers():
    rows = bfcl_rows()
    assert len(rows) > 300
    first = rows[0]
    assert json.loads(first["answer"])[0].keys() == {"calculate_triangle_area"}
