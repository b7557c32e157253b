"""Seeing what a deployment does: JSON logs, Prometheus metrics and OpenTelemetry traces.

What this package owns: the log format and the fields carried per
connection, the metric instruments (named as ASP.NET Core names them), and
the spans with their context carried across calls. Every other layer
reports into it; it reports into nothing.
"""
