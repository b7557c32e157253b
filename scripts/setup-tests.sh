#!/usr/bin/env bash
# Install everything the test suite needs, on Debian 12 (as root, or with sudo):
#   system packages: Chromium (the page tests), redis-server (the backplane tests and the hub
#   benchmarks), iproute2 (the two-hosts test), prometheus (the metrics test) and python3-venv;
#   .venv with trio_ws and its test and docs extras (pip install -e '.[test,docs]');
#   the Node trees: the official SignalR client for the hub tests and the chat example's page
#   (npm ci; Node 20.14 or later and npm must be installed: Debian 12's own nodejs is 18);
#   the hub benchmarks' peers (a venv of their own, and their Node clients).
# Then `.venv/bin/python -m pytest` runs the suite. .ci/run runs this script too.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "::: system packages: chromium, redis-server, iproute2, prometheus, python3-venv"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
packages=(chromium redis-server iproute2 prometheus)
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
as_root apt-get install -y -qq "${packages[@]}" >/dev/null

echo "::: .venv: trio_ws with its test and docs extras"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,docs]'

echo "::: npm ci: the official SignalR client for tests/signalr/test_signalr_node.py"
(cd tests/signalr_node && npm ci --no-audit --no-fund)

echo "::: npm ci: the official SignalR browser bundle for examples/signalr/chat.py's page (and tsc for its contract)"
(cd examples/signalr && npm ci --no-audit --no-fund)

echo "::: npm ci: tsc, the official client and the AsyncAPI parser for tests/signalr/contract/test_node.py"
(cd tests/contract_node && npm ci --no-audit --no-fund)

echo "::: the hub benchmarks' peers (a venv of their own) and Node clients"
.venv/bin/python -m benchmarks.hubs --setup

echo "::: ready: .venv/bin/python -m pytest"
