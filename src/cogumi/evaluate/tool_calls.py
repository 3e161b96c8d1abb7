"""Tool-call answers (BFCL): parse a model's call as Python syntax or JSON, match it against the key.

The match follows BFCL's AST checker for single calls: same function name, every given argument
among that parameter's accepted values, every required one given (a key listing "" as an accepted
value marks the parameter optional), and no argument the key does not know.
"""

import ast
import json
import re


def _literal(node: ast.AST):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError):
        return ast.unparse(node)  # a name or expression the model wrote: compared as text


def _calls_from_python(text: str) -> list[dict]:
    for candidate in (text, *re.findall(r"[\w.]+\(.*\)", text, flags=re.S)):
        candidate = candidate.strip().strip("`")
        try:
            tree = ast.parse(candidate, mode="eval")
        except SyntaxError:
            continue
        nodes = tree.body.elts if isinstance(tree.body, (ast.List, ast.Tuple)) else [tree.body]
        calls = [n for n in nodes if isinstance(n, ast.Call)]
        if calls and len(calls) == len(nodes):
            return [{"name": ast.unparse(c.func), "arguments": {k.arg: _literal(k.value) for k in c.keywords}}
                    for c in calls]
    return []


def _calls_from_json(text: str) -> list[dict]:
    match = re.search(r"[\[{].*[\]}]", text, flags=re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return []
        if "name" in item:
            args = item.get("arguments", item.get("parameters", {}))
            calls.append({"name": item["name"], "arguments": json.loads(args) if isinstance(args, str) else args})
        elif len(item) == 1 and isinstance(next(iter(item.values())), dict):  # {"func": {...}}
            name, args = next(iter(item.items()))
            calls.append({"name": name, "arguments": args})
    return calls


def parse_calls(text: str) -> list[dict]:
    """[{name, arguments}] the reply contains, or [] when it holds no parseable call."""
    return _calls_from_json(text) or _calls_from_python(text)


def _same(value, accepted) -> bool:
    if isinstance(value, str) and isinstance(accepted, str):
        return value.strip().lower() == accepted.strip().lower()
    if isinstance(value, (int, float)) and isinstance(accepted, (int, float)) and not isinstance(value, bool):
        return float(value) == float(accepted)
    if isinstance(value, (list, tuple)) and isinstance(accepted, (list, tuple)):
        return len(value) == len(accepted) and all(_same(v, a) for v, a in zip(value, accepted))
    if isinstance(value, dict) and isinstance(accepted, dict):
        return value.keys() == accepted.keys() and all(_same(value[k], accepted[k]) for k in value)
    return value == accepted


def call_matches(call: dict, key: dict) -> bool:
    """`key` = {function_name: {param: [accepted values]}} (BFCL's possible_answer format)."""
    (name, params), = key.items()
    if call["name"] != name:
        return False
    arguments = call["arguments"] or {}
    if set(arguments) - set(params):
        return False
    for param, accepted in params.items():
        if param not in arguments:
            if "" not in accepted:
                return False
        elif not any(_same(arguments[param], a) for a in accepted if a != ""):
            return False
    return True


def score_reply(text: str, ground_truth: list[dict]) -> bool:
    """A simple (single-call) item is right when the reply's one call matches the key's call."""
    calls = parse_calls(text)
    return len(calls) == len(ground_truth) and all(call_matches(c, k) for c, k in zip(calls, ground_truth))
