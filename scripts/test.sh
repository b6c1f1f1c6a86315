#!/usr/bin/env bash
# Run the whole test suite against a real PostgreSQL 15 + TimescaleDB + pg_cron + PL/Python + pgTAP server
# (a throwaway cluster started by the tests unless PGTRADE_DATABASE_URL names one). Sets up first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${PGTRADE_VENV:-$([ "$(id -u)" = 0 ] && echo /opt/pgtrade/venv || echo "$root/.venv")}"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
