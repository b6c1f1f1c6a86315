#!/usr/bin/env bash
# Run the whole test suite against a real PostgreSQL 15 + TimescaleDB + pg_cron + PL/Python + pgTAP server
# (a throwaway cluster started by the tests unless PGTRADE_DATABASE_URL names one). Sets up first, then lints:
# ruff check and ruff format --check over the tree (CI fails on either), then pytest (which also runs
# plpgsql_check over every PL/pgSQL function, tests/test_plpgsql_check.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${PGTRADE_VENV:-$([ "$(id -u)" = 0 ] && echo /opt/pgtrade/venv || echo "$root/.venv")}"
cd "$root"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
exec "$venv/bin/python" -m pytest "$@"
