"""How fast the entry points reject a bad override and skip an up-to-date stage.

Baseline, measured in the same run: a bare `python -c pass` start. Prints JSON and writes
benchmarks/results/foundation_startup.json. Goal (issue 2): a bad override exits 2 in under 3 s.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_file import write_result

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], repeats: int = 3) -> dict:
    seconds, codes = [], set()
    for _ in range(repeats):
        started = time.perf_counter()
        codes.add(subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode)
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "exit_codes": sorted(codes)}


def main() -> None:
    py = sys.executable
    results = {
        "baseline_python_start": timed([py, "-c", "pass"]),
        "bad_stage_override": timed([py, "evaluate.py", "stage=no_such_stage"]),
        "bad_hardware_override": timed([py, "evaluate.py", "hardware=tpu"]),
        "wrong_entry_for_stage": timed([py, "train.py", "stage=perplexity"]),
        # The first call may compute the artifact; the repeats measure the up-to-date skip.
        "up_to_date_stage_rerun": timed([py, "evaluate.py", "stage=perplexity", "logger=none"], repeats=3),
        "warm_setup": timed([py, "-m", "cogumi", "setup"], repeats=2),
    }
    worst = max(v["median_s"] for k, v in results.items() if k.startswith(("bad_", "wrong_")))
    results["goal_bad_override_under_3s"] = worst < 3.0
    out = ROOT / "benchmarks" / "results" / "foundation_startup.json"
    write_result(results, out)


if __name__ == "__main__":
    main()
