#!/usr/bin/env bash
# Set up everything pgtrade needs on a fresh Debian bookworm machine: system packages (as root) and a Python
# virtual environment with the project installed. Idempotent.
# The venv is made with Debian's /usr/bin/python3 (the interpreter PL/Python embeds), so the packages PL/Python
# imports (numpy, onnxruntime, scikit-learn) match it; as root it lives in /opt, readable by the postgres user.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" = 0 ]; then
  bash "$root/scripts/install-system.sh"
  default_venv=/opt/pgtrade/venv
else
  default_venv="$root/.venv"
fi
venv="${PGTRADE_VENV:-$default_venv}"
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[dev]"
chmod -R a+rX "$venv"
echo "python environment ready: $venv (activate: source $venv/bin/activate)"
