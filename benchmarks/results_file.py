"""Where every benchmark ends: its result as JSON in a results file and the same JSON on stdout."""

import json
from pathlib import Path


def write_result(result: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, default=str)  # default=str: Paths and numpy scalars in a few results
    path.write_text(text + "\n")
    print(text)
