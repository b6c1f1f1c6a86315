#!/usr/bin/env bash
# The market-data feed of docker-compose.yml, in three commands (each against $PGTRADE_DATABASE_URL):
#   feed.sh sample   load the bundled sample history (data/) unless every series of it is stored (service sample)
#   feed.sh stream   exec `pgtrade stream`: --source replay --resume by default, alpaca when both ALPACA keys are
#                    set ($FEED_SOURCE overrides; service feed)
#   feed.sh health   exit 0 while a stream holds its session in the database (the feed's health check)
# pgtrade's own options come from the environment: PGTRADE_LOG_JSON=1 makes every line on stderr a JSON object.
set -euo pipefail

: "${PGTRADE_DATABASE_URL:?set PGTRADE_DATABASE_URL (the database the feed writes to)}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="${PGTRADE_DATA_DIR:-$(cd "$here/../.." && pwd)/data}"  # the repository's data/ (/opt/pgtrade/src/data)
[ -f "$data/manifest.json" ] || data=/opt/pgtrade/src/data
read -r -a pgtrade <<<"${PGTRADE_BIN:-pgtrade}"  # the command that runs pgtrade (tests: python -m pgtrade.cli)

psql_q() { psql "$PGTRADE_DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# The sample series whose last bar is not stored (a load commits in batches: a series whose last bar is there
# was loaded to its end).
missing_sample() {
  psql_q -v manifest="$(cat "$data/manifest.json")" <<'SQL'
SELECT coalesce(string_agg(m.symbol, ',' ORDER BY m.symbol), '')
FROM json_to_recordset(:'manifest'::json) AS m(symbol text, "interval" text, last_ts timestamptz)
WHERE NOT EXISTS (SELECT 1 FROM market.bars b
                  WHERE b.symbol = m.symbol AND b.interval = m."interval" AND b.ts = m.last_ts);
SQL
}

source_of() {
  local src="${FEED_SOURCE:-auto}"
  if [ "$src" = auto ]; then
    if [ -n "${ALPACA_API_KEY:-}" ] && [ -n "${ALPACA_SECRET_KEY:-}" ]; then src=alpaca; else src=replay; fi
  fi
  echo "$src"
}

case "${1:-}" in
  sample)
    missing="$(missing_sample)"
    if [ -z "$missing" ]; then
      echo "feed.sh: the sample history is stored already" >&2
      exit 0
    fi
    exec "${pgtrade[@]}" load sample --symbols "$missing"
    ;;
  stream)
    src="$(source_of)"
    case "$src" in
      replay | synthetic)
        symbols="${FEED_SYMBOLS:-SPX,IXIC}"
        args=(--source "$src" --symbols "$symbols" --interval 1m)
        [ "$src" = replay ] && args+=(--resume)
        ;;
      alpaca | yfinance)
        symbols="${FEED_SYMBOLS:-AAPL,MSFT}"
        args=(--source "$src" --symbols "$symbols" --interval "${FEED_INTERVAL:-1m}"
          --poll "${FEED_POLL_SECONDS:-30}")
        ;;
      *)
        echo "feed.sh: FEED_SOURCE must be auto, replay, synthetic, alpaca or yfinance, not '$src'" >&2
        exit 2
        ;;
    esac
    # extra arguments (tests bound a run with --max-bars/--duration/--speed) go to pgtrade stream as given
    exec "${pgtrade[@]}" stream "${args[@]}" "${@:2}"
    ;;
  health)
    n="$(psql_q -c "SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = 'pgtrade-stream' AND datname = current_database()")"
    [ "$n" -gt 0 ] || { echo "feed.sh: no pgtrade stream session in the database" >&2; exit 1; }
    ;;
  *)
    echo "usage: feed.sh sample|stream|health" >&2
    exit 2
    ;;
esac
