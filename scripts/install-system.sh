#!/usr/bin/env bash
# Install the system packages pgtrade's database needs on Debian bookworm:
# PostgreSQL 15 with pg_cron, PL/Python, pgTAP and plpgsql_check (the tests check every PL/pgSQL function with it),
# plus TimescaleDB 2.28.3, and pgbouncer (tests/test_load.py and bench/api_load_bench.py run it).
# Used by .ci/run, by the README's setup command and by docker/db/Dockerfile.
# Run as root. Idempotent. Exits non-zero with one line when it cannot install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMESCALEDB_VERSION=2.28.3

if [ "$(id -u)" != 0 ]; then
  echo "install-system: run as root (sudo $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  postgresql-15 postgresql-client-15 postgresql-15-cron postgresql-plpython3-15 postgresql-15-pgtap \
  postgresql-15-plpgsql-check pgbouncer \
  python3 python3-venv python3-dev ca-certificates chromium >/dev/null
# Tools the tests run the compose stack's pieces with (tests/test_docker_files.py): Debian's docker-compose (v1, a
# real compose implementation), busybox (the wget of the monitoring images' health checks), Prometheus and its
# PostgreSQL exporter. Not in the db image, whose Dockerfile sets PGTRADE_DB_IMAGE=1.
if [ -z "${PGTRADE_DB_IMAGE:-}" ]; then
  apt-get install -y -qq --no-install-recommends docker-compose busybox prometheus prometheus-postgres-exporter >/dev/null
fi

# TimescaleDB: the build shipped beside the project (developers' machines, CI), else Timescale's own apt repository.
shared_tsdb="${PGTRADE_TIMESCALEDB_DIR:-$here/../../shared/timescaledb}"
if [ -x "$shared_tsdb/install.sh" ]; then
  "$shared_tsdb/install.sh"
elif [ -f /usr/share/postgresql/15/extension/timescaledb--${TIMESCALEDB_VERSION}.sql ]; then
  echo "timescaledb ${TIMESCALEDB_VERSION} already installed"
else
  if ! { apt-get install -y -qq curl gnupg lsb-release >/dev/null &&
         curl -fsSL https://packagecloud.io/timescale/timescaledb/gpgkey | gpg --dearmor --yes -o /usr/share/keyrings/timescaledb.gpg &&
         echo "deb [signed-by=/usr/share/keyrings/timescaledb.gpg] https://packagecloud.io/timescale/timescaledb/debian/ $(lsb_release -cs) main" > /etc/apt/sources.list.d/timescaledb.list &&
         apt-get update -qq &&
         apt-get install -y -qq "timescaledb-2-postgresql-15=${TIMESCALEDB_VERSION}*" >/dev/null; }; then
    echo "install-system: could not install TimescaleDB ${TIMESCALEDB_VERSION} from Timescale's apt repository; install timescaledb-2-postgresql-15 by hand (docs.timescale.com) or set PGTRADE_TIMESCALEDB_DIR to a local build" >&2
    exit 1
  fi
fi
# The Debian package creates and starts a default cluster; pgtrade runs its own, so keep the default one stopped.
if command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .* online'; then
  pg_ctlcluster 15 main stop || true
fi
echo "system packages ready: $(/usr/lib/postgresql/15/bin/postgres --version)"
