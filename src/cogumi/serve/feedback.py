"""Production failures become training data: each escalation is one JSONL line that
`train.py stage=modifier` reads as a source ({time, domain, prompt, rejected, answer, answer_route})."""

import json
import threading
from datetime import datetime, timezone
from pathlib import Path


class FeedbackLog:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def append(self, domain: str | None, prompt: str, rejected: str, answer: str | None, answer_route: str) -> None:
        if self.path is None:
            return
        line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "domain": domain,
                           "prompt": prompt, "rejected": rejected, "answer": answer, "answer_route": answer_route},
                          ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as out:
                out.write(line + "\n")
