"""Run model-written code against its unit tests in a separate, limited Python process.

The child gets a fresh temporary folder as its working directory, an empty environment, Python's
isolated mode, CPU-time and address-space limits (`resource.setrlimit`) and a wall-clock timeout
after which its whole process group is killed. This contains loops, memory bombs and stray file
writes of the small programs benchmarks produce; it is not a security boundary against hostile code.
"""

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionResult:
    passed: bool
    status: str  # passed | failed | timeout
    detail: str = ""


def _limit(memory_mb: int, cpu_s: int):
    def apply():
        import resource

        os.setsid()  # own process group, so a timeout kills grandchildren too
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 512) -> ExecutionResult:
    """Execute `program`; passed = exit code 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="cogumi-sandbox-") as workdir:
        script = os.path.join(workdir, "program.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(program)
        proc = subprocess.Popen([sys.executable, "-I", "-B", script], cwd=workdir, env={"PATH": "/usr/bin:/bin"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_limit(memory_mb, int(timeout_s) + 1))
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return ExecutionResult(False, "timeout", f"killed after {timeout_s} s")
        if proc.returncode == 0:
            return ExecutionResult(True, "passed")
        if proc.returncode < 0 and -proc.returncode in (signal.SIGXCPU, signal.SIGKILL):
            return ExecutionResult(False, "timeout", f"CPU limit (signal {-proc.returncode})")
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return ExecutionResult(False, "failed", tail[0][:300])


def check_solution(code: str, tests: str, setup: str = "", timeout_s: float = 10.0,
                   memory_mb: int = 512) -> ExecutionResult:
    """Program = setup code, the candidate, then its tests (asserts, or HumanEval's `check(...)`)."""
    return run_program(f"{setup}\n{code}\n\n{tests}\n", timeout_s=timeout_s, memory_mb=memory_mb)


def extract_code(text: str) -> str:
    """The first fenced code block of a reply, or the reply itself when it has none."""
    if "```" not in text:
        return text
    block = text.split("```", 2)[1]
    first, _, rest = block.partition("\n")
    return rest if first.strip().lower() in ("python", "py", "python3", "") else block
