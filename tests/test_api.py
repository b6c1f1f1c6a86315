"""The REST API as PostgREST drives it: per request a transaction, ``SET LOCAL ROLE <role>``,
``set_config('request.jwt.claims', <claims>, true)``, the view or function call, and the HTTP status from the
SQLSTATE (or from ``response.status``). Allowed and denied cases per role, account isolation, recorded rejections
answered with 422, injection strings as data, and every documented SQLSTATE mapped to a 4xx."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import injection_canary
import psycopg
import pytest
from postgrest import apply_role_settings, begin_request, postgrest_status, role_settings
from psycopg.rows import dict_row
from trading_support import T0, account, advance, bars, instrument

NOW = T0 + timedelta(minutes=5)
ROOT = Path(__file__).resolve().parent.parent
ROLES = ("web_anon", "trader", "pgtrade_admin")


class Response:
    def __init__(self, rows=None, status=200, sqlstate=None, message=None):
        self.rows, self.status, self.sqlstate, self.message = rows or [], status, sqlstate, message

    @property
    def row(self) -> dict:
        assert len(self.rows) == 1, self.rows
        return self.rows[0]


def request(
    conn: psycopg.Connection,
    role: str,
    query: str,
    params=(),
    *,
    claims: dict | None = None,
    account_claim: str | None = None,
) -> Response:
    """One PostgREST request inside the test's transaction (a savepoint stands in for its transaction), with the
    role's own settings applied as PostgREST applies them (tests/postgrest.py)."""
    assert role in ROLES
    claims = dict(claims if claims is not None else {"role": role})
    if account_claim is not None:
        claims["account"] = account_claim
    settings = role_settings(conn, role)
    before = {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in settings}
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            begin_request(conn, role, claims, settings)  # role, claims, the role's statement_timeout etc.
            cur.execute(query, params)
            rows = cur.fetchall()
            status = cur.execute("SELECT current_setting('response.status', true) AS s").fetchone()["s"]
    except psycopg.Error as exc:
        return Response(
            status=postgrest_status(exc.sqlstate, role != "web_anon"),
            sqlstate=exc.sqlstate,
            message=exc.diag.message_primary,
        )
    finally:
        conn.execute("RESET ROLE")
        conn.execute("SELECT set_config('request.jwt.claims', '', true), set_config('response.status', '', true)")
        apply_role_settings(conn, before)  # the test's own transaction goes on without the web role's limits
    return Response(rows, int(status) if status else 200)


@pytest.fixture
def market(db):
    """Symbol APIX with five bars at 100 and two backtest accounts (clock T0+5m); returns their names."""
    sym = "APIX"
    instrument(db, sym)
    bars(db, sym, [(100, 100, 100, 100)] * 5)
    names = {}
    for who in ("alice", "bob"):
        name = f"{who}_{uuid.uuid4().hex[:6]}"
        advance(db, account(db, name), NOW)
        names[who] = name
    return sym, names["alice"], names["bob"]


def place(db, role, acct, *args, **kw) -> Response:
    """POST /rpc/place_order: positional symbol, side, qty, then named arguments."""
    params = {f"a{i}": v for i, v in enumerate(args)} | kw
    q = (
        "SELECT * FROM api.place_order("
        + ", ".join([f"%(a{i})s" for i in range(len(args))] + [f"{k} => %({k})s" for k in kw])
        + ")"
    )
    return request(db, role, q, params, account_claim=acct)


# --- web_anon ------------------------------------------------------------------------------------------------


def test_anon_reads_bars_instruments_and_health(db, market):
    sym, *_ = market
    r = request(
        db,
        "web_anon",
        "SELECT * FROM api.bars WHERE symbol = %s AND interval = '1m' AND ts >= %s ORDER BY ts LIMIT 3",
        (sym, T0 + timedelta(minutes=1)),
    )
    assert r.status == 200 and [b["ts"] for b in r.rows] == [T0 + timedelta(minutes=i) for i in (1, 2, 3)]
    assert set(r.rows[0]) == {"symbol", "interval", "ts", "open", "high", "low", "close", "volume"}
    r = request(db, "web_anon", "SELECT * FROM api.instruments WHERE symbol = %s", (sym,))
    assert r.row["qty_step"] == 1 and r.row["active"] is True
    h = request(db, "web_anon", "SELECT api.health() AS h").row["h"]
    assert h["timescaledb_version"] and h["server_version"].startswith("15")
    # ok exactly when nothing is wrong (tests/test_jobs.py and tests/test_health.py make jobs fail for real)
    assert (h["status"], h["problems"]) == ("ok", []) or (h["status"] in ("degraded", "failing") and h["problems"]), h
    assert datetime.fromisoformat(h["latest_bar"]["ts"]) >= T0 + timedelta(minutes=4)
    assert any(j["proc"].endswith("policy_compression") for j in h["timescaledb_jobs"])
    if h["pg_cron"] is not None:  # pg_cron runs in one database per cluster
        assert {j["job"] for j in h["pg_cron"]["jobs"]} >= {"pgtrade-trading-snapshots"}


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM api.orders",
        "SELECT * FROM api.positions",
        "SELECT * FROM api.portfolio",
        "SELECT * FROM api.fills",
        "SELECT * FROM api.snapshots",
        "SELECT * FROM api.events",
        "SELECT * FROM api.rejected_bars",
        "SELECT * FROM api.place_order('APIX', 'buy', 1)",
        "SELECT * FROM api.cancel_order(1)",
        "SELECT * FROM api.close_position('APIX')",
        "SELECT * FROM api.pause_trading()",
        "SELECT * FROM api.resume_trading()",
        "SELECT api.request_account_id()",
        "SELECT * FROM market.bars LIMIT 1",
        "SELECT * FROM trading.orders",
        "SELECT trading.place_order(1, 'APIX', 'buy', 1)",
    ],
)
def test_anon_is_denied_accounts_and_private_schemas(db, market, query):
    r = request(db, "web_anon", query)
    assert (r.sqlstate, r.status) == ("42501", 401)


def test_trader_is_denied_admin_views_and_private_schemas(db, market):
    _, alice, _ = market
    for q in (
        "SELECT * FROM api.rejected_bars",
        "SELECT * FROM trading.accounts",
        "SELECT * FROM market.bars",
        "SELECT trading.set_paused(1, true)",
        "SELECT * FROM ops.schema_migrations",
    ):
        r = request(db, "trader", q, account_claim=alice)
        assert (r.sqlstate, r.status) == ("42501", 403), q


# --- trader: its own account only ----------------------------------------------------------------------------


def test_trader_sees_only_its_own_account(db, market):
    sym, alice, bob = market
    assert place(db, "trader", alice, sym, "buy", 3).row["status"] == "filled"
    assert place(db, "trader", bob, sym, "buy", 5).row["status"] == "filled"
    assert place(db, "trader", bob, sym, "buy", 1, type="limit", limit_price=90).row["status"] == "accepted"
    db.execute("SELECT trading.snapshot_portfolio(id) FROM trading.accounts WHERE name IN (%s, %s)", (alice, bob))
    for view in ("orders", "positions", "portfolio", "fills", "snapshots", "events"):
        mine = request(db, "trader", f"SELECT DISTINCT account FROM api.{view}", account_claim=alice)
        assert mine.rows == [{"account": alice}], view
        # a PostgREST filter on the other account finds nothing
        other = request(db, "trader", f"SELECT * FROM api.{view} WHERE account = %s", (bob,), account_claim=alice)
        assert other.status == 200 and other.rows == [], view
    pos = request(db, "trader", "SELECT symbol, qty FROM api.positions", account_claim=bob).rows
    assert pos == [{"symbol": sym, "qty": 5}]


def test_trader_cannot_cancel_or_trade_for_another_account(db, market):
    sym, alice, bob = market
    bobs = place(db, "trader", bob, sym, "buy", 1, type="limit", limit_price=90).row
    r = request(db, "trader", "SELECT * FROM api.cancel_order(%s)", (bobs["id"],), account_claim=alice)
    assert (r.sqlstate, r.status) == ("TR014", 400)  # exactly like an order that does not exist
    assert request(db, "trader", "SELECT * FROM api.cancel_order(-1)", account_claim=alice).sqlstate == "TR014"
    assert (
        request(db, "trader", "SELECT status FROM api.orders WHERE id = %s", (bobs["id"],), account_claim=bob).row[
            "status"
        ]
        == "accepted"
    )
    r = place(db, "trader", alice, sym, "buy", 1, account=bob)
    assert (r.sqlstate, r.status) == ("42501", 403)
    for q in ("SELECT * FROM api.pause_trading(%s)", "SELECT * FROM api.close_position('APIX', NULL, %s)"):
        r = request(db, "trader", q, (bob,), account_claim=alice)
        assert (r.sqlstate, r.status) == ("42501", 403), q
    assert db.execute("SELECT paused FROM trading.accounts WHERE name = %s", (bob,)).fetchone()[0] is False


@pytest.mark.parametrize(
    "claims", [{"role": "trader"}, {"role": "trader", "account": "nobody-here"}, {"role": "trader", "account": None}]
)
def test_trader_token_without_a_valid_account_is_403(db, market, claims):
    sym, _, bob = market
    place(db, "trader", bob, sym, "buy", 1)  # rows to read: the account check runs when a row is filtered
    for q in (
        "SELECT * FROM api.orders",
        "SELECT * FROM api.portfolio",
        "SELECT * FROM api.positions",
        "SELECT * FROM api.fills",
        "SELECT * FROM api.events",
        "SELECT * FROM api.place_order('APIX', 'buy', 1)",
        "SELECT * FROM api.cancel_order(1)",
        "SELECT * FROM api.close_position('APIX')",
        "SELECT * FROM api.pause_trading()",
        "SELECT api.request_account_id()",
    ):
        r = request(db, "trader", q, claims=claims)
        assert (r.sqlstate, r.status) == ("28000", 403), q
    assert db.execute("SELECT count(*) FROM trading.orders WHERE symbol = 'APIX'").fetchone()[0] == 1


def test_trader_trades_cancels_closes_pauses_and_resumes(db, market):
    sym, alice, _ = market
    r = place(db, "trader", alice, sym, "buy", 10)
    assert r.status == 200 and (r.row["status"], r.row["filled_qty"], r.row["account"]) == ("filled", 10, alice)
    lim = place(
        db, "trader", alice, sym, "buy", 2, type="limit", limit_price="95.5", tif="gtc", client_order_id="my-1"
    ).row
    assert (lim["status"], lim["limit_price"], lim["tif"], lim["client_order_id"]) == ("accepted", 95.5, "gtc", "my-1")
    again = place(
        db, "trader", alice, sym, "buy", 2, type="limit", limit_price="95.5", tif="gtc", client_order_id="my-1"
    )
    assert again.row["id"] == lim["id"]  # idempotent client id
    changed = place(
        db, "trader", alice, sym, "buy", 3, type="limit", limit_price="95.5", tif="gtc", client_order_id="my-1"
    )
    assert (changed.sqlstate, changed.status) == ("TR012", 400)
    c = request(db, "trader", "SELECT * FROM api.cancel_order(%s)", (lim["id"],), account_claim=alice)
    assert c.status == 200 and c.row["status"] == "cancelled"
    c2 = request(db, "trader", "SELECT * FROM api.cancel_order(%s)", (lim["id"],), account_claim=alice)
    assert (c2.sqlstate, c2.status) == ("TR015", 400)
    bracket = place(db, "trader", alice, sym, "buy", 1, stop_loss=90, take_profit=110).row
    assert (bracket["status"], bracket["stop_loss"], bracket["take_profit"]) == ("filled", 90, 110)

    p = request(db, "trader", "SELECT * FROM api.portfolio", account_claim=alice).row
    assert p["positions_value"] == 1100 and p["total_value"] == p["cash"] + 1100
    assert p["total_value"] == p["initial_cash"] + p["realized_pnl"] + p["unrealized_pnl"] - p["commissions"]

    closed = request(db, "trader", "SELECT * FROM api.close_position(%s)", (sym.lower(),), account_claim=alice)
    assert closed.status == 200 and (closed.row["side"], closed.row["qty"], closed.row["status"]) == (
        "sell",
        11,
        "filled",
    )
    flat = request(db, "trader", "SELECT * FROM api.close_position(%s)", (sym,), account_claim=alice)
    assert (flat.sqlstate, flat.status) == ("TR002", 400)

    paused = request(db, "trader", "SELECT * FROM api.pause_trading()", account_claim=alice)
    assert paused.row["paused"] is True and paused.row["account"] == alice
    r = place(db, "trader", alice, sym, "buy", 1)
    assert (r.status, r.row["status"], r.row["reject_code"]) == (422, "rejected", "TR007")
    assert request(db, "trader", "SELECT * FROM api.resume_trading()", account_claim=alice).row["paused"] is False
    assert place(db, "trader", alice, sym, "buy", 1).row["status"] == "filled"
    kinds = [
        e["kind"] for e in request(db, "trader", "SELECT kind FROM api.events ORDER BY id", account_claim=alice).rows
    ]
    assert kinds.count("order_rejected") == 1 and "order_cancelled" in kinds and "fill" in kinds


def test_rejected_order_answers_422_and_stays_recorded_after_commit(db_url):
    name = f"rej_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as owner:
        owner.execute("SELECT trading.create_account(%s, 1000)", (name,))
    with psycopg.connect(db_url) as conn:  # exactly one PostgREST request: BEGIN ... COMMIT
        conn.execute("SET LOCAL ROLE trader")
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"role": "trader", "account": name}),)
        )
        row = conn.execute(
            "SELECT id, status, reject_code, reject_reason FROM api.place_order('NOSUCHSYM', 'buy', 1)"
        ).fetchone()
        status = conn.execute("SELECT current_setting('response.status', true)").fetchone()[0]
        conn.commit()
    assert row[1:3] == ("rejected", "TR009") and "NOSUCHSYM" in row[3]
    assert status == "422"
    with psycopg.connect(db_url) as owner:
        stored = owner.execute("SELECT status, reject_code FROM trading.orders WHERE id = %s", (row[0],)).fetchone()
        events = owner.execute("SELECT kind FROM trading.events WHERE order_id = %s", (row[0],)).fetchall()
    assert stored == ("rejected", "TR009") and events == [("order_rejected",)]


# --- pgtrade_admin -------------------------------------------------------------------------------------------


def test_admin_sees_every_account_and_acts_on_any(db, market):
    sym, alice, bob = market
    place(db, "trader", alice, sym, "buy", 1)
    r = place(db, "pgtrade_admin", None, sym, "buy", 2, account=bob)
    assert r.row["account"] == bob and r.row["status"] == "filled"
    seen = request(
        db, "pgtrade_admin", "SELECT DISTINCT account FROM api.orders WHERE account IN (%s, %s)", (alice, bob)
    )
    assert {x["account"] for x in seen.rows} == {alice, bob}
    assert request(db, "pgtrade_admin", "SELECT count(*) AS n FROM api.portfolio").row["n"] >= 3  # + default
    # the claim names the account when no argument does
    assert place(db, "pgtrade_admin", alice, sym, "buy", 1).row["account"] == alice
    r = request(db, "pgtrade_admin", "SELECT * FROM api.pause_trading(%s)", (bob,))
    assert r.row["paused"] is True and r.row["account"] == bob
    no_account = place(db, "pgtrade_admin", None, sym, "buy", 1)
    assert (no_account.sqlstate, no_account.status) == ("TR013", 400)
    unknown = place(db, "pgtrade_admin", None, sym, "buy", 1, account="nobody-here")
    assert (unknown.sqlstate, unknown.status) == ("TR013", 400)
    assert request(db, "pgtrade_admin", "SELECT count(*) AS n FROM api.rejected_bars").status == 200


def test_portfolio_day_change_against_last_snapshot_before_the_day(db, market):
    sym, alice, _ = market
    place(db, "trader", alice, sym, "buy", 10)
    fresh = request(db, "trader", "SELECT * FROM api.portfolio", account_claim=alice).row
    assert fresh["day_start_value"] == fresh["initial_cash"]  # no snapshot yet
    db.execute(
        "INSERT INTO trading.portfolio_snapshots (account_id, ts, cash, positions_value, total_value,"
        " realized_pnl, unrealized_pnl, commissions, peak_value, drawdown)"
        " SELECT id, ts, 0, 0, v, 0, 0, 0, v, 0 FROM trading.accounts,"
        " (VALUES (%s::timestamptz, 99000), (%s::timestamptz, 98000), (%s::timestamptz, 1)) s(ts, v)"
        " WHERE name = %s",
        (T0 - timedelta(days=2), T0 - timedelta(days=1), T0.replace(hour=0), alice),
    )
    p = request(db, "trader", "SELECT * FROM api.portfolio", account_claim=alice).row
    assert p["as_of"] == NOW and p["day_start_value"] == 98000  # the 00:00 snapshot is inside the day
    assert p["day_change"] == p["total_value"] - 98000
    assert p["day_change_pct"] == round((p["total_value"] - 98000) / 98000 * 100, 4)


# --- injection strings are data --------------------------------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE trading.orders; --",
    "x' OR '1'='1",
    "$$; DROP SCHEMA api CASCADE; $$",
    '"; SELECT pg_sleep(10); --',
    "APIX'||(SELECT current_user)||'",
    "%s %I %L",
    "\\x00' ; --",
    *injection_canary.CANARIES,  # these would leave a session-level lock behind if ever executed
]
BASE_ARGS = {  # valid values for the arguments an api function needs
    "place_order": {"symbol": "APIX", "side": "buy", "qty": 1},
    "close_position": {"symbol": "APIX"},
    "pause_trading": {},
    "resume_trading": {},
    "request_account_id": {},
    "set_auto_trading": {},
    # backtests (tests/test_api_backtest.py): every injected value is refused before a run starts
    "run_backtest": {"strategy": "sma_crossover", "symbols": ["APIX"], "interval": "1m", "start_ts": T0, "end_ts": NOW},
}

# the codes an injected argument may be refused with (BT: an unknown strategy, interval or mode of run_backtest)
REFUSED_AS_DATA = {"TR002", "TR012", "TR013", "42501", "BT001", "BT003", "BT004"}


def test_injection_strings_in_every_text_argument_are_data(db, market):
    sym, alice, _ = market
    place(db, "trader", alice, sym, "buy", 1)  # so close_position has something to close
    text_args = db.execute(
        "SELECT p.proname, a.name FROM pg_proc p, unnest(p.proargnames, p.proargtypes::oid[]) a(name, type)"
        " WHERE p.pronamespace = 'api'::regnamespace AND a.type = 'text'::regtype ORDER BY 1, 2"
    ).fetchall()
    assert {f for f, _ in text_args} == set(BASE_ARGS), "a new api function with text arguments: add it here"
    before = db.execute("SELECT count(*) FROM trading.orders").fetchone()[0]
    calls = 0
    for fn, arg in text_args:
        for bad in INJECTIONS:
            args = BASE_ARGS[fn] | {arg: bad}
            # argument names quoted, as PostgREST quotes them (run_backtest has an argument named interval)
            q = f"SELECT * FROM api.{fn}(" + ", ".join(f'"{k}" => %({k})s' for k in args) + ")"
            role = "pgtrade_admin" if arg == "account" else "trader"
            r = request(db, role, q, args, account_claim=alice)
            calls += 1
            if r.sqlstate is not None:
                # rejected as data: a documented code, never a syntax error or an undefined object
                assert r.sqlstate in REFUSED_AS_DATA, (fn, arg, bad, r.sqlstate, r.message)
                assert r.status in (400, 403)
                continue
            if fn == "place_order":
                row = r.row
                stored = {
                    "symbol": row["symbol"],
                    "side": row["side"],
                    "type": row["type"],
                    "tif": row["tif"],
                    "client_order_id": row["client_order_id"],
                }[arg]
                expected = (
                    bad.strip().upper()
                    if arg == "symbol"
                    else (bad if arg == "client_order_id" else bad.strip().lower())
                )
                assert stored == expected, (arg, bad, stored)
                if arg != "client_order_id":
                    assert (r.status, row["reject_code"]) == (422, "TR010" if arg != "symbol" else "TR009")
    assert calls == len(text_args) * len(INJECTIONS)
    # nothing was executed: every request ran in a savepoint, so only a mark that survives a rollback can tell
    assert not injection_canary.fired(db), "an argument was executed as SQL"
    assert db.execute("SELECT count(*) FROM trading.orders").fetchone()[0] > before


def test_the_injection_canary_fires_when_a_string_is_executed(db):
    """The check above can fail: a string spliced into SQL text (what a careless function would do) and run in a
    savepoint that is then rolled back still leaves the canary's lock behind."""
    careless = (
        "DO $d$ BEGIN EXECUTE 'SELECT ''' || current_setting('pgtrade.test_arg') || ''''; "
        "RAISE EXCEPTION 'rolled back'; END $d$"
    )
    for canary in (injection_canary.CANARIES[1], injection_canary.CANARIES[4]):
        with pytest.raises(psycopg.errors.RaiseException), db.transaction():
            db.execute("SELECT set_config('pgtrade.test_arg', %s, true)", (canary,))
            db.execute(careless)
        assert injection_canary.fired(db), canary
        injection_canary.release(db)
    assert not injection_canary.fired(db)


# --- SQLSTATE -> HTTP ------------------------------------------------------------------------------------------


def documented_codes() -> list[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    return sorted(set(re.findall(r"^\| (TR\d{3}|[0-9A-Z]{5}) \|", text, re.M)))


def documented_rows() -> dict[str, tuple[str, str]]:
    """docs/errors.md: code -> (how it reaches a caller, the HTTP status column)."""
    text = (ROOT / "docs" / "errors.md").read_text()
    rows = re.findall(r"^\| (TR\d{3}|[0-9A-Z]{5}) \|.*\| ([^|]+) \| ([^|]+) \| [^|]+ \|$", text, re.M)
    return {code: (how.strip(), http.strip()) for code, how, http in rows}


# The documented API error codes, each of which a request below must actually raise (a code the docs promise
# but nothing raises any more is a finding, as is a raised code the docs do not list).
API_RAISED = {"TR002", "TR012", "TR013", "TR014", "TR015", "28000", "42501", "ML041", "ML042"}


def test_every_error_the_api_raises_is_documented_with_the_status_postgrest_gives_it(db, market):
    """Derived from the errors the API really raises (not from a list of codes): each failing request runs as
    PostgREST runs it, and its SQLSTATE must be in docs/errors.md with the HTTP status PostgREST's documented rules
    give that code (a 4xx, never a 500), for the caller's kind (with or without a JWT)."""
    sym, alice, bob = market
    resting = place(db, "trader", alice, sym, "buy", 1, type="limit", limit_price=90, client_order_id="dup").row
    done = place(db, "trader", alice, sym, "buy", 1, type="limit", limit_price=91).row
    request(db, "trader", "SELECT * FROM api.cancel_order(%s)", (done["id"],), account_claim=alice)
    cases = [
        ("web_anon", None, "SELECT * FROM api.orders", {}),
        ("web_anon", None, "SELECT * FROM api.place_order('APIX', 'buy', 1)", {}),
        ("trader", alice, "SELECT * FROM market.bars LIMIT 1", {}),
        ("trader", alice, "SELECT * FROM api.rejected_bars", {}),
        ("trader", alice, "SELECT * FROM api.place_order('APIX', 'buy', 1, account => %(b)s)", {"b": bob}),
        ("trader", "nobody-here", "SELECT * FROM api.orders", {}),
        ("trader", "nobody-here", "SELECT api.request_account_id()", {}),
        ("trader", alice, "SELECT * FROM api.cancel_order(-1)", {}),
        ("trader", alice, "SELECT * FROM api.cancel_order(%(id)s)", {"id": done["id"]}),
        ("trader", alice, "SELECT * FROM api.close_position(%(s)s)", {"s": sym}),
        (
            "trader",
            alice,
            "SELECT * FROM api.place_order('APIX', 'buy', 2, type => 'limit', limit_price => 90,"
            " client_order_id => 'dup')",
            {},
        ),
        ("pgtrade_admin", None, "SELECT * FROM api.place_order('APIX', 'buy', 1)", {}),
        ("pgtrade_admin", None, "SELECT * FROM api.pause_trading('nobody-here')", {}),
        ("trader", alice, "SELECT * FROM api.set_auto_trading(models => '{no_such_model}')", {}),
        ("trader", alice, "SELECT * FROM api.set_auto_trading(min_confidence => 1.5)", {}),
    ]
    assert resting["status"] == "accepted"
    docs = documented_rows()
    raised: set[str] = set()
    for role, acct, query, params in cases:
        r = request(db, role, query, params, account_claim=acct)
        assert r.sqlstate is not None, (role, query, r.rows)
        raised.add(r.sqlstate)
        assert r.sqlstate in docs, f"{query} as {role} raises {r.sqlstate} ({r.message}); docs/errors.md lacks it"
        how, http = docs[r.sqlstate]
        assert "raised" in how, (r.sqlstate, how)
        status = postgrest_status(r.sqlstate, authenticated=role != "web_anon")
        assert 400 <= status < 500, (r.sqlstate, status)
        assert status in [int(x) for x in re.findall(r"\b\d{3}\b", http)], (r.sqlstate, status, http)
    assert raised == API_RAISED
    # every code the api functions raise by name is documented too (reached or not by the requests above)
    for path in sorted((ROOT / "db" / "api").glob("*.sql")):
        for code in re.findall(r"ERRCODE\s*=\s*'([0-9A-Z]{5})'", path.read_text()):
            assert code in docs, f"{path.name} raises {code}; docs/errors.md lacks it"


def test_documented_http_status_matches_the_mapping():
    text = (ROOT / "docs" / "errors.md").read_text()
    rows = re.findall(r"^\| (TR\d{3}|[0-9A-Z]{5}) \|.*\| ([^|]+) \| ([^|]+) \| [^|]+ \|$", text, re.M)
    assert len(rows) == len(documented_codes())
    for code, how, http in rows:
        stated = [int(x) for x in re.findall(r"\b\d{3}\b", http)]
        if how.startswith("rejected order"):
            assert stated[0] == 422, (code, http)  # response.status of api.place_order / close_position
            stated = stated[1:]
        for status in stated:
            assert status in (postgrest_status(code, True), postgrest_status(code, False)), (code, http)
