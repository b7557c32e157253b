"""docs/operating.md stays true: its alert rules load in Prometheus's own checker and name only metrics
trio_ws exports, and its tables name every metric there is."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .observe.test_grafana_dashboard import exported, metric_names

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operating.md"


def alert_rules() -> str:
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    (rules,) = [block for block in blocks if "groups:" in block]
    return rules


def rule_expressions(rules: str) -> list[str]:
    """Each ``expr:``, on one line or as a ``|`` block."""
    found: list[str] = []
    lines = rules.splitlines()
    for number, line in enumerate(lines):
        key = re.match(r"(\s*)expr: ?(.*)", line)
        if key is None:
            continue
        if key.group(2).strip() != "|":
            found.append(key.group(2))
            continue
        indent = len(key.group(1))
        body = []
        for following in lines[number + 1 :]:
            if len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        found.append(" ".join(body))
    return found


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules())
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_the_alert_rules_name_only_exported_metrics() -> None:
    names = {name for series in exported().values() for name in series} | {"up"}
    expressions = rule_expressions(alert_rules())
    assert len(expressions) == 8
    for expression in expressions:
        named = metric_names(expression)
        assert named and named <= names, f"{expression!r} names {sorted(named - names)}"


def test_every_metric_is_described() -> None:
    text = GUIDE.read_text()
    for family in exported():
        assert f"`{family}" in text, f"docs/operating.md does not describe {family}"
