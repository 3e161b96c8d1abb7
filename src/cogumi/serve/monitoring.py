"""Request log (JSONL, no prompt text unless enabled) and Prometheus metrics for `/metrics`."""

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SWAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
TPS_BUCKETS = (5, 10, 25, 50, 100, 200, 400)


class Histogram:
    def __init__(self, bounds: tuple):
        self.bounds, self.counts, self.total = bounds, [0] * (len(bounds) + 1), 0.0

    def add(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.counts[-1] += 1
        self.total += value

    def render(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        lines = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {n}' for b, n in zip(self.bounds, self.counts)]
        return lines + [f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.counts[-1]}',
                        f"{name}_sum{{{labels}}} {self.total:.6f}", f"{name}_count{{{labels}}} {self.counts[-1]}"]


class Metrics:
    """Counters and one latency histogram, rendered in Prometheus text format (no extra package)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)  # (endpoint, status) -> count
        self.routes = defaultdict(int)  # (route, model) -> count
        self.tokens = defaultdict(int)  # kind -> count
        self.latency_counts = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
        self.latency_sum = defaultdict(float)
        self.last_decode_tps = 0.0
        # per (route, adapter): latency, decode rate; swaps and escalations
        self.route_latency = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.route_tps = defaultdict(lambda: Histogram(TPS_BUCKETS))
        self.route_tokens = defaultdict(int)
        self.swaps = Histogram(SWAP_BUCKETS)
        self.escalations = defaultdict(int)  # (from, to) -> count
        self.in_flight = 0
        self.started = time.time()

    def observe(self, endpoint: str, status: int, seconds: float, record: dict | None = None) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            buckets = self.latency_counts[endpoint]
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-1] += 1
            self.latency_sum[endpoint] += seconds
            if record:
                self.routes[(record.get("route", "base"), record.get("model", ""))] += 1
                self.tokens["prompt"] += record.get("prompt_tokens", 0)
                self.tokens["completion"] += record.get("completion_tokens", 0)
                if record.get("decode_tokens_per_s"):
                    self.last_decode_tps = record["decode_tokens_per_s"]
                key = (record.get("route", "base"), record.get("adapter") or "none")
                self.route_latency[key].add(seconds)
                self.route_tokens[key] += record.get("completion_tokens", 0)
                if record.get("decode_tokens_per_s"):
                    self.route_tps[key].add(record["decode_tokens_per_s"])
                if record.get("swap_ms"):  # a real switch of adapter (0 = the context already had it)
                    self.swaps.add(record["swap_ms"] / 1000)
                if record.get("decided_by") == "escalation":
                    self.escalations[(record.get("escalated_from") or "?", record.get("route", "?"))] += 1

    def summary(self) -> dict:
        with self._lock:
            return {"requests": sum(self.requests.values()),
                    "errors": sum(n for (_, s), n in self.requests.items() if s >= 400),
                    "prompt_tokens": self.tokens["prompt"], "completion_tokens": self.tokens["completion"],
                    "uptime_s": round(time.time() - self.started, 1)}

    def render(self) -> str:
        out = []

        def family(name, kind, help_text):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("cogumi_requests_total", "counter", "Requests by endpoint and HTTP status.")
            for (endpoint, status), n in sorted(self.requests.items()):
                out.append(f'cogumi_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            family("cogumi_request_latency_seconds", "histogram", "Request latency.")
            for endpoint, counts in sorted(self.latency_counts.items()):
                for bound, n in zip(LATENCY_BUCKETS, counts):
                    out.append(f'cogumi_request_latency_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {n}')
                out.append(f'cogumi_request_latency_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {counts[-1]}')
                out.append(f'cogumi_request_latency_seconds_sum{{endpoint="{endpoint}"}} '
                           f'{self.latency_sum[endpoint]:.6f}')
                out.append(f'cogumi_request_latency_seconds_count{{endpoint="{endpoint}"}} {counts[-1]}')
            family("cogumi_tokens_total", "counter", "Prompt and completion tokens processed.")
            for kind in ("prompt", "completion"):
                out.append(f'cogumi_tokens_total{{kind="{kind}"}} {self.tokens[kind]}')
            family("cogumi_decode_tokens_per_second", "gauge", "Decode rate of the last answer.")
            out.append(f"cogumi_decode_tokens_per_second {self.last_decode_tps}")
            family("cogumi_routing_decisions_total", "counter", "Answers by route and model.")
            for (route, model), n in sorted(self.routes.items()):
                out.append(f'cogumi_routing_decisions_total{{route="{route}",model="{model}"}} {n}')
            family("cogumi_route_latency_seconds", "histogram", "Answer latency by route and adapter.")
            for (route, adapter), hist in sorted(self.route_latency.items()):
                out.extend(hist.render("cogumi_route_latency_seconds", f'route="{route}",adapter="{adapter}"'))
            family("cogumi_route_decode_tokens_per_second", "histogram", "Decode rate by route and adapter.")
            for (route, adapter), hist in sorted(self.route_tps.items()):
                out.extend(hist.render("cogumi_route_decode_tokens_per_second",
                                       f'route="{route}",adapter="{adapter}"'))
            family("cogumi_route_completion_tokens_total", "counter", "Completion tokens by route and adapter.")
            for (route, adapter), n in sorted(self.route_tokens.items()):
                out.append(f'cogumi_route_completion_tokens_total{{route="{route}",adapter="{adapter}"}} {n}')
            family("cogumi_adapter_swap_seconds", "histogram", "LoRA adapter switches (load included when lazy).")
            out.extend(self.swaps.render("cogumi_adapter_swap_seconds", ""))
            family("cogumi_escalations_total", "counter", "Dissatisfied follow-ups re-answered one route up.")
            for (source, target), n in sorted(self.escalations.items()):
                out.append(f'cogumi_escalations_total{{from="{source}",to="{target}"}} {n}')
            family("cogumi_requests_in_flight", "gauge", "Requests queued or running.")
            out.append(f"cogumi_requests_in_flight {self.in_flight}")
        return "\n".join(out) + "\n"


class RequestLog:
    """One JSON line per request. Prompt and reply text only when `log_text` is on."""

    def __init__(self, path: str | Path | None, log_text: bool = False):
        self.path = Path(path) if path else None
        self.log_text = log_text
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entry: dict, prompt=None, reply: str | None = None) -> None:
        if self.path is None:
            return
        entry = {"ts": round(time.time(), 3), **entry}
        if self.log_text:
            entry.update(prompt=prompt, reply=reply)
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock, open(self.path, "a") as out:
            out.write(line + "\n")
