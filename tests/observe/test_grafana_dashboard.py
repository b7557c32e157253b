"""The Grafana dashboard shipped in docs/grafana/trio_ws.json asks only for metrics trio_ws exports.

Every PromQL expression in it (panels and variables) is taken apart, and each
metric name it names must be one a server with metrics on writes; every
family trio_ws exports must be on the dashboard too. A real Prometheus runs
each expression in tests/observe/test_metrics_prometheus.py, which proves they parse.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from trio_ws._observe.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "trio_ws.json"

# PromQL words that are not metric names: aggregations, functions, modifiers.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets (rows' too) and its variables'."""
    found: list[str] = []

    def panels(items: list[dict[str, Any]]) -> None:
        for panel in items:
            found.extend(target["expr"] for target in panel.get("targets", []))
            panels(panel.get("panels", []))

    panels(board["panels"])
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    return found


def runnable(expression: str) -> str:
    """An expression as Prometheus runs it once Grafana has filled in its variables."""
    return expression.replace("$__rate_interval", "5s").replace("$job", ".*")


def metric_names(expression: str) -> set[str]:
    """The metric names an expression reads (label matchers, grouping labels and strings left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    text = re.sub(r"\b\d[\d.]*(ms|[smhdwy])?\b", " ", text)  # numbers and durations
    label_values = re.match(r"\s*label_values\((\w+),", expression)
    if label_values:
        return {label_values.group(1)}
    names = set()
    for match in _NAME.finditer(text):
        name, rest = match.group(), text[match.end() :]
        if rest.lstrip().startswith("(") or name in _KEYWORDS or name.startswith("$"):
            continue  # a function, an aggregation, a keyword
        names.add(name)
    return names


def exported() -> dict[str, set[str]]:
    """What a server with metrics on writes: each family's name, and the sample names it has."""
    text = Metrics(None).render().decode()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {
        family.name: {family.name + suffix for suffix in suffixes[family.type]}
        for family in text_string_to_metric_families(text)
    }


def test_every_expression_names_only_exported_metrics() -> None:
    names = {name for series in exported().values() for name in series}
    exprs = expressions(dashboard())
    assert len(exprs) > 20
    for expression in exprs:
        named = metric_names(expression)
        assert named, expression
        assert named <= names, f"{expression!r} names {sorted(named - names)}, which trio_ws does not export"


def test_every_exported_family_is_on_the_dashboard() -> None:
    used = {name for expression in expressions(dashboard()) for name in metric_names(expression)}
    for family, series in exported().items():
        assert series & used, f"{family} is exported but on no panel"


def test_the_name_reader_reads_promql() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le, hub) (rate(a_bucket{job=~"$job",x="b_total"}[5m])))'
        " / on (hub) group_left sum(b_total offset 1h)"
    )
    assert metric_names(expression) == {"a_bucket", "b_total"}


def test_the_dashboard_is_grafana_json() -> None:
    board = dashboard()
    assert board["title"] == "trio_ws" and board["uid"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]
