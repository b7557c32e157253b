"""What every benchmark here shares: pinned processes, rotated rounds and same-run ratio tables.

``python -m benchmarks`` (the echo servers) and ``python -m benchmarks.hubs``
(the hub servers) measure in the same way, with the pieces below:

* A server runs in its own process pinned to one CPU (``taskset -c``) and
  the load generator in another process pinned to the other CPU, so the two
  never compete for a core (``pick_cpus``, ``pinned``).
* A server to measure is a ``ServerSpec``: a name, and ``key=value``
  options for variants of it (``trio_ws:message_queue_size=4``).
* Rounds rotate the order of the servers (``rotated``), so a burst of noise
  from other work on the machine does not always hit the same one.
* Every figure is divided by the baseline server's figure from the same
  round, and the table shows the median of those ratios over the rounds
  (``ratio_table``): only ratios from one run are comparable on a shared
  machine.
* The load generator's CPU share says whether it, and not the server, was
  the bottleneck (``load_check``).

Results have one shape everywhere: ``results[label][round][scenario][key]``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_DEADLINE = 30.0
# A generator below this CPU share had CPU to spare, so the server was the bottleneck.
SATURATION = 0.9

Results = dict[str, list[dict[str, dict[str, float]]]]


@dataclass(frozen=True)
class ServerSpec:
    """A server name, with ``key=value`` options for a variant of it: ``name:key=value,...``."""

    label: str
    name: str
    options: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, known: Sequence[str]) -> ServerSpec:
        name, _, options = text.partition(":")
        if name not in known:
            raise SystemExit(f"unknown server {name!r}; choose from {', '.join(known)}")
        return cls(text, name, tuple(o for o in options.split(",") if o))

    def option_values(self) -> dict[str, str]:
        return dict(option.split("=", 1) for option in self.options)


def parse_servers(text: str, known: Sequence[str]) -> list[ServerSpec]:
    """``a,b,c:k=v,k2=v2`` -> specs; a ``k=v`` item belongs to the server before it."""
    specs: list[ServerSpec] = []
    for item in text.split(","):
        if not item:
            continue
        if "=" in item and ":" not in item and specs:
            last = specs.pop()
            specs.append(ServerSpec(f"{last.label},{item}", last.name, (*last.options, item)))
        else:
            specs.append(ServerSpec.parse(item, known))
    return specs


def raise_file_limit() -> None:
    """Allow as many open sockets as the hard limit does (the idle scenario opens thousands)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pick_cpus() -> tuple[int, int] | None:
    """The server's CPU and the load generator's, or ``None`` with fewer than two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return available[0], available[1]


def pinned(command: list[str], cpu: int | str | None) -> list[str]:
    """``command`` run on ``cpu`` (a CPU number, or a list such as ``0-2``), if taskset is there."""
    if cpu is None:
        return command
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command  # no util-linux: run unpinned rather than not at all


def rotated(items: Sequence[ServerSpec], round_number: int) -> list[ServerSpec]:
    """Round ``n`` starts with the ``n``-th server, so no server always runs first or last."""
    shift = round_number % len(items)
    return [*items[shift:], *items[:shift]]


@contextmanager
def server_process(
    command: list[str], cpu: int | str | None, cwd: Path, label: str, *, read_stdout: bool = True
) -> Iterator[subprocess.Popen[str]]:
    """Run a server pinned to ``cpu`` for the ``with`` block; then kill it and show the end of its stderr.

    Its stderr goes to a file, never a pipe: a server that logs a lot must
    never block on a full pipe. A server that wrote anything there did
    something the benchmark did not expect, so it is shown.
    """
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            pinned(command, cpu),
            cwd=cwd,
            stdout=subprocess.PIPE if read_stdout else subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            yield server
        finally:
            server.kill()
            server.communicate(timeout=10)
            log.seek(0)
            stderr = log.read()
            if stderr.strip():
                print(f"{label} wrote to stderr (the end of it):\n{stderr[-2000:]}", file=sys.stderr)


def run_generator(
    command: list[str], cpu: int | str | None, cwd: Path, label: str, budget: float
) -> dict[str, dict[str, float]]:
    """Run a load generator pinned to ``cpu``: its measurements by scenario, from one JSON object a line."""
    load = subprocess.run(pinned(command, cpu), cwd=cwd, capture_output=True, text=True, timeout=budget)
    if load.returncode != 0:
        raise SystemExit(f"load generator failed against {label}:\n{load.stderr}")
    measured = [json.loads(line) for line in load.stdout.splitlines() if line.startswith("{")]
    # JSON has no NaN, so a generator in Node writes a figure it could not measure as null.
    return {m.pop("scenario"): {k: float("nan") if v is None else v for k, v in m.items()} for m in measured}


def read_port(server: subprocess.Popen[str]) -> int:
    """The port in the server's ``listening on SCHEME://HOST:PORT/...`` line on stdout."""
    assert server.stdout is not None
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on \w+://[^:]+:(\d+)/", line)
        if match:
            return int(match.group(1))
    server.kill()
    server.communicate(timeout=10)
    raise SystemExit(f"server {server.args!r} did not start (it wrote nothing we expected)")


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    higher_is_better: bool
    unit: str


def ratio_table(
    results: Results,
    labels: Sequence[str],
    baseline: str,
    metrics: Sequence[Metric],
    titles: Mapping[str, str],
    *,
    absolute_for_all: bool = False,
) -> str:
    """The ratio table: median over rounds of (server's figure / baseline's figure in that round).

    With ``absolute_for_all``, each cell also shows the server's own median
    figure, for readers who compare with other runs (with care).
    """
    others = [label for label in labels if label != baseline]
    header = ["scenario", "metric", f"{baseline} (abs.)", *others]
    rows = [header]
    previous = None
    for metric in metrics:
        base = [r.get(metric.scenario, {}).get(metric.key, float("nan")) for r in results[baseline]]
        row = [
            titles[metric.scenario] if metric.scenario != previous else "",
            f"{metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better)",
            absolute(_median(base), metric.unit),
        ]
        previous = metric.scenario
        for label in others:
            figures = [r.get(metric.scenario, {}).get(metric.key, float("nan")) for r in results[label]]
            ratios = [
                figure / b
                for figure, b in zip(figures, base, strict=True)
                if b and b == b and figure == figure  # skip a zero or NaN baseline, and NaN figures
            ]
            cell = f"{statistics.median(ratios):.2f}x" if ratios else "n/a"
            if absolute_for_all and ratios:
                cell = f"{absolute(_median(figures), metric.unit)} {cell}"
            row.append(cell)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    rounds = len(results[baseline])
    note = (
        f"\nEach ratio: the server's figure divided by {baseline}'s in the same round, median of "
        f"{rounds} round(s).\nThe {baseline} column shows its median absolute figure for this run only."
    )
    return "\n" + "\n".join(lines) + note


def _median(values: Sequence[float]) -> float:
    present = [v for v in values if v == v]
    return statistics.median(present) if present else float("nan")


def absolute(value: float, unit: str) -> str:
    if value != value:
        return "n/a"
    if unit == "KiB":
        return f"{value / 1024:,.1f} KiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:,.0f} us"
    return f"{value:,.1f} {unit}"


def load_check(results: Results, scenarios: Sequence[str], titles: Mapping[str, str]) -> str:
    """Was the generator the bottleneck? Its highest CPU share per scenario, beside the server's."""
    lines = ["\nCPU share (CPU seconds / wall seconds), highest over servers and rounds:"]
    for name in scenarios:
        measured = [
            r[name] for runs in results.values() for r in runs if name in r and "client_cpu" in r[name]
        ]
        if not measured:
            continue
        client = max(m["client_cpu"] for m in measured)
        server = statistics.median(m["server_cpu"] for m in measured)
        verdict = (
            "generator had CPU to spare" if client < SATURATION else "WARNING: generator near saturation"
        )
        lines.append(
            f"  {titles[name]:<38} load generator {client:.2f}, server (median) {server:.2f}: {verdict}"
        )
    return "\n".join(lines)


def cpu_table(
    results: Results, labels: Sequence[str], scenarios: Sequence[str], titles: Mapping[str, str]
) -> str:
    """Each server's CPU share beside the generator's, per scenario (medians over rounds), and a verdict.

    A server near 1.0 with the generator well below it was the bottleneck, as
    it should be; both well below 1.0 means the two waited on each other
    (one round trip at a time) or the machine's other work took the CPU.
    The verdict looks at the generator's highest share in any round.
    """
    header = ["scenario", *labels, "load generator"]
    rows = [header]
    for name in scenarios:
        row = [titles[name]]
        highest = 0.0
        for label in labels:
            measured = [r[name] for r in results[label] if "client_cpu" in r.get(name, {})]
            if not measured:
                row.append("n/a")
                continue
            server = statistics.median(m["server_cpu"] for m in measured)
            client = statistics.median(m["client_cpu"] for m in measured)
            highest = max(highest, *(m["client_cpu"] for m in measured))
            row.append(f"server {server:.2f}, load {client:.2f}")
        verdict = "had CPU to spare" if highest < SATURATION else "WARNING: near saturation"
        row.append(f"highest {highest:.2f}: {verdict}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\nCPU share (CPU seconds / wall seconds), median over rounds:\n" + "\n".join(lines)


def run_rounds(
    specs: Sequence[ServerSpec],
    rounds: int,
    measure: Callable[[ServerSpec], dict[str, dict[str, float]]],
    log: Callable[[str], None],
) -> Results:
    """Measure every spec once per round, in rotated order; ``results[label][round]``."""
    results: Results = {s.label: [] for s in specs}
    for round_number in range(rounds):
        for spec in rotated(specs, round_number):
            log(f"  round {round_number + 1}/{rounds}: {spec.label}")
            results[spec.label].append(measure(spec))
    return results
