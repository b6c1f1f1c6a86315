#!/usr/bin/env bash
# The pgtrade database container: prepare the cluster in $PGTRADE_HOME (first start: initdb with pgtrade's
# settings; every start: create $POSTGRES_DB, migrate, set the PostgREST login role's password), then run
# PostgreSQL in the foreground as the postgres user. exec all the way down, so `docker stop` reaches postgres.
# Any other command (e.g. `pgtrade ...`, `bash`) runs as given.
set -euo pipefail

if [ "$#" -gt 0 ] && [ "$1" != postgres ]; then
  exec "$@"
fi

export PGTRADE_HOME="${PGTRADE_HOME:-/var/lib/pgtrade}"
export PGTRADE_PORT="${PGTRADE_PORT:-5432}"
venv="${PGTRADE_VENV:-/opt/pgtrade/venv}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset PGTRADE_DATABASE_URL  # this container runs its own server

if [ "$(id -u)" != 0 ]; then
  echo "pgtrade-db: the entry point runs as root (it drops to the postgres user to run the server)" >&2
  exit 1
fi

"$venv/bin/python" "$here/prepare.py"

# The same environment `pgtrade db up` gives the server (PYTHONPATH = the venv's site-packages, for PL/Python).
mapfile -t server_env < <("$venv/bin/python" -c \
  'from pgtrade.cluster import server_env; print("\n".join(f"{k}={v}" for k, v in server_env().items()))')
[ "${#server_env[@]}" -gt 0 ] || { echo "pgtrade-db: could not compute the server environment" >&2; exit 1; }
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  env -i "${server_env[@]}" /usr/lib/postgresql/15/bin/postgres -D "$PGTRADE_HOME/data"
