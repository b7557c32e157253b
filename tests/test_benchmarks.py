"""The benchmark harness runs end to end in its quickest mode (it asserts nothing about speed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import BASELINE, DEFAULT_SERVERS, METRICS, TITLES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_quick_run_prints_a_ratio_for_every_server_and_scenario() -> None:
    """`python -m benchmarks --quick` measures every server in every scenario and prints the table."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote to stderr" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    assert header.split()[2:] == [BASELINE, "(abs.)", *(s for s in DEFAULT_SERVERS if s != BASELINE)]
    for title in TITLES.values():
        assert title in result.stdout
    # One row per metric, each with the baseline's absolute figure and one ratio per other server.
    rows = [line for line in lines if re.search(r"\((higher|lower) is better\)", line)]
    assert len(rows) == len(METRICS)
    for row in rows:
        ratios = re.findall(r"\s(\d+\.\d\d)x", row)
        if "per server CPU-s" in row:
            # A server that got no clock tick of CPU in a quick window (on a busy machine) has no
            # figure per CPU-second: its cell reads n/a.
            ratios += re.findall(r"\sn/a\b", row)
        assert len(ratios) == len(DEFAULT_SERVERS) - 1, row
    assert "generator had CPU to spare" in result.stdout or "near saturation" in result.stdout
