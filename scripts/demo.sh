#!/usr/bin/env bash
# The main job: set up, start the database, migrate, load the bundled real history, and show what is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
venv="${PGTRADE_VENV:-$([ "$(id -u)" = 0 ] && echo /opt/pgtrade/venv || echo "$root/.venv")}"
export PATH="$venv/bin:$PATH"
cd "$root"
pgtrade db up
pgtrade db status
pgtrade load sample
pgtrade summary
