"""The per-record filter chain of the curate stage, in order; the first filter that objects removes.

schema -> language -> pii -> offensive -> length (student tokenizer) -> quality (heuristic, then the
teacher judge when enabled) -> decontamination. Survivors get their metadata filled in.
"""

import logging
from dataclasses import dataclass

from cogumi.data.decontam import ContaminationIndex
from cogumi.data.filters import (LanguageFilter, QualityHeuristic, offensive_pattern, offensive_problem,
                                 pii_problem, schema_problem)
from cogumi.data.labels import difficulty_of, domain_of
from cogumi.data.normalise import record_text
from cogumi.data.report import CurationReport

log = logging.getLogger(__name__)


@dataclass
class Screens:
    language: LanguageFilter | None
    tokenizer: object  # the student's tokenizer (chat template applied before counting)
    min_tokens: int
    max_tokens: int
    min_quality: float
    pii_kinds: list
    pii_allow_domains: list
    offensive: object  # compiled pattern or None
    contamination: ContaminationIndex | None
    judge: object = None  # cogumi.data.judge.Judge or None
    judge_min_score: float | None = None
    teacher_name: str = "none"

    @classmethod
    def build(cls, tokenizer, language: dict, length: dict, quality: dict, pii: dict, offensive_terms: list,
              contamination: ContaminationIndex | None, judge=None, judge_min_score=None, teacher_name="none"):
        return cls(
            language=LanguageFilter(**language) if language.get("allowed") else None,
            tokenizer=tokenizer, min_tokens=length["min_tokens"], max_tokens=length["max_tokens"],
            min_quality=quality["min_score"], pii_kinds=list(pii.get("kinds") or []),
            pii_allow_domains=[d.lower() for d in pii.get("allow_domains") or []],
            offensive=offensive_pattern(list(offensive_terms or [])), contamination=contamination,
            judge=judge, judge_min_score=judge_min_score, teacher_name=teacher_name)

    def screen_text(self, record: dict, report: CurationReport) -> str | None:
        """Cheap text screens; returns the removing filter's name, or None."""
        source = record["metadata"]["source"]["name"]
        if (why := schema_problem(record)) is not None:
            report.remove(source, "schema", record["id"], why)
            return "schema"
        text = record_text(record)
        if self.language is not None:
            lang, prob = self.language.detect(record)
            if prob < self.language.min_confidence:
                report.language_uncertain += 1
            else:
                report.languages[lang] += 1
            record["metadata"]["language"] = lang
            if (why := self.language.problem(lang, prob)) is not None:
                report.remove(source, "language", record["id"], why)
                return "language"
        if (why := pii_problem(text, self.pii_kinds, self.pii_allow_domains)) is not None:
            report.remove(source, "pii", record["id"], why)
            return "pii"
        if (why := offensive_problem(text, self.offensive)) is not None:
            report.remove(source, "offensive", record["id"], why)
            return "offensive"
        return None

    def token_counts(self, records: list[dict]) -> list[int]:
        """Tokens of each record as the trainer will see it: the chat template, then the tokenizer."""
        texts = self.tokenizer.apply_chat_template([r["messages"] for r in records], tokenize=False)
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def screen_batch(self, records: list[dict], report: CurationReport, heuristic: QualityHeuristic) -> list[dict]:
        """Length, quality and decontamination on records that passed `screen_text`; survivors labelled."""
        survivors = []
        for record, tokens in zip(records, self.token_counts(records) if records else []):
            source, meta = record["metadata"]["source"]["name"], record["metadata"]
            if not self.min_tokens <= tokens <= self.max_tokens:
                report.remove(source, "length", record["id"], f"{tokens} tokens")
                continue
            score, scorer = heuristic.score(record), "heuristic"
            threshold = self.min_quality
            if self.judge is not None and (judged := self.judge.score(record)) is not None:
                score, scorer, threshold = judged, "judge", self.judge_min_score
            if score < threshold:
                report.remove(source, "quality", record["id"], f"{scorer} score {score}")
                continue
            if self.contamination is not None and (hit := self.contamination.match(record_text(record))):
                report.remove(source, "decontamination", record["id"], hit[0])
                report.decontamination[hit[0]]["removed"] += 1
                if len(report.decontamination_examples) < 20:
                    report.decontamination_examples.append({"id": record["id"], "set": hit[0], "eval_text": hit[1]})
                continue
            # The judge's domain label, when it gave one, wins over the keyword heuristic.
            meta.update(tokens=tokens, quality_score=score, quality_scorer=scorer,
                        domain=meta.pop("judge_domain", None) or domain_of(record),
                        difficulty=difficulty_of(record, tokens),
                        judge=self.teacher_name if scorer == "judge" else None)
            survivors.append(record)
        return survivors
