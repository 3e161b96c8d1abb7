"""Domain and difficulty labels by heuristics (the router and the modifiers read `metadata.domain`).

Domains are the `conf/domain/` options: code, math, reasoning, automation, general.
"""

import re

from cogumi.data.normalise import record_text

_CODE = re.compile(r"```|\bdef \w+\(|\bfunction\s*\w*\(|\bclass \w+[:(]|#include|\bimport \w+|\bSELECT\b.+\bFROM\b|"
                   r"\b(?:python|javascript|java|c\+\+|sql|html|css|regex|algorithm|compile|debug|programming|"
                   r"code|script|function)\b", re.I)
_MATH = re.compile(r"\d+\s*[-+*/^=]\s*\d+|\b(?:calculate|solve|equation|integral|derivative|percent|sum of|"
                   r"probability|how many|how much|average|multiply|divide|fraction|square root)\b", re.I)
_REASONING = re.compile(r"\b(?:why|explain|reason|logic|therefore|infer|deduce|compare|contrast|pros and cons|"
                        r"step by step|puzzle|riddle|argument|evaluate|analy[sz]e|hypothes[ie]s)\b", re.I)
_AUTOMATION = re.compile(r"\b(?:schedule|remind|email|api|automate|workflow|book a|order|convert|"
                         r"translate|send|calendar|extract|format|json|csv)\b", re.I)


def domain_of(record: dict) -> str:
    """The first domain whose signal is strong enough; tool calls are automation by construction."""
    if any(m["role"] == "tool" for m in record["messages"]) or any(
            m["role"] == "system" and "functions" in m["content"] for m in record["messages"]):
        return "automation"
    text = record_text(record)
    scores = {
        "code": len(_CODE.findall(text)) * 2,
        "math": len(_MATH.findall(text)),
        "reasoning": len(_REASONING.findall(record["instruction"])),
        "automation": len(_AUTOMATION.findall(record["instruction"])),
    }
    best = max(scores, key=scores.get)
    return best if scores[best] >= 2 else "general"


def difficulty_of(record: dict, tokens: int) -> str:
    """easy / medium / hard from length, turns and structure of what is asked and answered."""
    turns = sum(m["role"] == "user" for m in record["messages"])
    points = 0
    points += tokens > 150
    points += tokens > 400
    points += turns > 2
    points += len(record["instruction"].split()) > 40
    points += bool(re.search(r"```|\n\s*\d+\.", record["response"]))
    return "easy" if points <= 1 else "medium" if points <= 2 else "hard"
