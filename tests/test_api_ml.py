"""The ML part of the REST API (issue 12, section 7) as PostgREST drives it (tests/test_api.py's harness): anonymous
callers read signals and anomalies, not alerts, settings or the registry; a trader reads and changes only its own
auto-trading settings and sees market-wide alerts and its own; an administrator everything; nobody reads ONNX bytes
or reaches schema ml. Bad settings are refused with their SQLSTATE and change nothing. PostgREST's filters on the
large tables reach their indexes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import injection_canary
import numpy as np
import pytest
from ml_support import register_model
from psycopg.types.json import Jsonb
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from test_api import INJECTIONS, request
from trading_support import T0, account, instrument

SIGNAL_COLUMNS = {
    "id",
    "symbol",
    "interval",
    "ts",
    "model",
    "model_version",
    "model_id",
    "probability",
    "confidence",
    "signal",
    "close",
    "atr",
    "stop_loss",
    "take_profit",
    "created_at",
}
ANOMALY_COLUMNS = {
    "id",
    "symbol",
    "interval",
    "ts",
    "type",
    "score",
    "severity",
    "model",
    "model_version",
    "details",
    "detected_at",
}
SETTINGS = ("enabled", "models", "min_confidence", "size_fraction", "use_brackets")


def _fitted(kind: str, n_features: int):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, n_features)).astype(np.float32)
    if kind == "anomaly":
        return IsolationForest(n_estimators=10, random_state=0).fit(X)
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(np.int64))


@pytest.fixture
def ml_world(db):
    """Symbol MLAPI with a direction model (active) and an anomaly model, a signal and an anomaly on its bar, two
    live accounts (alice, bob), and three alerts: market-wide, alice's and bob's."""
    sym = "MLAPI"
    instrument(db, sym)
    n = len(db.execute("SELECT ml.feature_names()").fetchone()[0])
    tag = uuid.uuid4().hex[:6]
    direction = f"dir_{tag}"
    anomaly = f"iso_{tag}"
    dir_id = register_model(db, _fitted("direction", n), name=direction, symbols=[sym], interval="1m")
    iso_id = register_model(db, _fitted("anomaly", n), name=anomaly, symbols=[sym], interval="1m", task="anomaly")
    db.execute(
        "INSERT INTO ml.signals (model_id, symbol, interval, ts, probability, confidence, signal, close, atr,"
        " stop_loss, take_profit) VALUES (%s, %s, '1m', %s, 0.61, 0.6, 'BUY', 100, 1.5, 97, 103)",
        (dir_id, sym, T0),
    )
    anomaly_row = db.execute(
        "INSERT INTO ml.anomalies (symbol, interval, ts, type, score, severity, model_id, details)"
        " VALUES (%s, '1m', %s, 'pattern', -0.2, 'HIGH', %s, %s) RETURNING id",
        (sym, T0, iso_id, Jsonb({"why": "test"})),
    ).fetchone()[0]
    names = {who: f"{who}_{tag}" for who in ("alice", "bob")}
    ids = {who: account(db, name, kind="live", clock=None) for who, name in names.items()}
    alerts = {}
    for who, acct in (("market", None), ("alice", ids["alice"]), ("bob", ids["bob"])):
        alerts[who] = db.execute(
            "INSERT INTO ops.alerts (kind, severity, symbol, account_id, message, anomaly_id)"
            " VALUES ('anomaly', 'HIGH', %s, %s, %s, %s) RETURNING id",
            (sym, acct, f"alert for {who}", anomaly_row if acct is None else None),
        ).fetchone()[0]
    return {
        "symbol": sym,
        "direction": direction,
        "anomaly": anomaly,
        "dir_id": dir_id,
        "alice": names["alice"],
        "bob": names["bob"],
        "ids": ids,
        "alerts": alerts,
    }


def settings_of(db, account_id: int):
    row = db.execute(
        "SELECT enabled, models, min_confidence, size_fraction, use_brackets FROM trading.auto_trading"
        " WHERE account_id = %s",
        (account_id,),
    ).fetchone()
    return None if row is None else dict(zip(SETTINGS, row, strict=True))


def set_auto(db, role, acct, **kw):
    q = "SELECT * FROM api.set_auto_trading(" + ", ".join(f"{k} => %({k})s" for k in kw) + ")"
    return request(db, role, q, kw, account_claim=acct)


# --- anonymous ------------------------------------------------------------------------------------------------


def test_anon_reads_signals_and_anomalies(db, ml_world):
    w = ml_world
    s = request(db, "web_anon", "SELECT * FROM api.signals WHERE symbol = %s AND interval = '1m'", (w["symbol"],))
    assert s.status == 200 and set(s.row) == SIGNAL_COLUMNS
    assert (s.row["model"], s.row["model_version"], s.row["signal"], s.row["ts"]) == (w["direction"], 1, "BUY", T0)
    assert (s.row["stop_loss"], s.row["take_profit"]) == (97, 103)
    a = request(db, "web_anon", "SELECT * FROM api.anomalies WHERE symbol = %s", (w["symbol"],))
    assert a.status == 200 and set(a.row) == ANOMALY_COLUMNS
    assert (a.row["type"], a.row["severity"], a.row["model"], a.row["details"]) == (
        "pattern",
        "HIGH",
        w["anomaly"],
        {"why": "test"},
    )


def test_each_signal_names_its_model_and_version(db, ml_world):
    """Several models (and versions) score the same bar: a client tells them apart, and filters by model name."""
    w = ml_world
    n = len(db.execute("SELECT ml.feature_names()").fetchone()[0])
    v2 = register_model(db, _fitted("direction", n), name=w["direction"], symbols=[w["symbol"]], interval="1m")
    other = register_model(
        db, _fitted("direction", n), name=w["direction"] + "_b", symbols=[w["symbol"]], interval="1m"
    )
    for mid, p in ((v2, 0.3), (other, 0.5)):
        db.execute(
            "INSERT INTO ml.signals (model_id, symbol, interval, ts, probability, confidence, signal, close)"
            " VALUES (%s, %s, '1m', %s, %s, 0.4, 'HOLD', 100)",
            (mid, w["symbol"], T0, p),
        )
    rows = request(
        db,
        "web_anon",
        "SELECT model, model_version, probability FROM api.signals WHERE symbol = %s AND ts = %s ORDER BY model_id",
        (w["symbol"], T0),
    ).rows
    assert [(r["model"], r["model_version"], r["probability"]) for r in rows] == [
        (w["direction"], 1, 0.61),
        (w["direction"], 2, 0.3),
        (w["direction"] + "_b", 1, 0.5),
    ]
    only = request(db, "web_anon", "SELECT model_id FROM api.signals WHERE model = %s", (w["direction"] + "_b",))
    assert only.rows == [{"model_id": other}]
    status = request(
        db,
        "trader",
        "SELECT version, status FROM api.models WHERE name = %s ORDER BY version",
        (w["direction"],),
        account_claim=w["alice"],
    ).rows
    assert status == [{"version": 1, "status": "retired"}, {"version": 2, "status": "active"}]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM api.alerts",
        "SELECT * FROM api.auto_trading",
        "SELECT * FROM api.models",
        "SELECT * FROM api.set_auto_trading(enabled => true)",
        "SELECT * FROM ml.models",
        "SELECT * FROM ml.signals",
        "SELECT ml.feature_names()",
        "SELECT * FROM ops.alerts",
        "SELECT * FROM trading.auto_trading",
        "SELECT internal.onnx_run(1, '{0}', 1)",
    ],
)
def test_anon_is_denied_alerts_settings_the_registry_and_schema_ml(db, ml_world, query):
    r = request(db, "web_anon", query)
    assert (r.sqlstate, r.status) == ("42501", 401), r.message


# --- trader -----------------------------------------------------------------------------------------------------


def test_trader_reads_the_registry_but_never_onnx_bytes_nor_schema_ml(db, ml_world):
    w = ml_world
    r = request(db, "trader", "SELECT * FROM api.models WHERE name = %s", (w["direction"],), account_claim=w["alice"])
    m = r.row
    assert (m["status"], m["task"], m["kind"], m["symbols"], m["version"]) == (
        "active",
        "direction",
        "LogisticRegression",
        [w["symbol"]],
        1,
    )
    stored = db.execute(
        "SELECT features, feature_version, octet_length(onnx), onnx_sha256 FROM ml.models WHERE id = %s", (w["dir_id"],)
    ).fetchone()
    assert (m["features"], m["feature_version"], m["onnx_size"], m["onnx_sha256"]) == stored
    assert not any(isinstance(v, bytes | memoryview) for v in m.values())
    bytes_col = request(db, "trader", "SELECT onnx FROM api.models", account_claim=w["alice"])
    assert bytes_col.sqlstate == "42703"  # no such column: PostgREST answers 400
    for q in (
        "SELECT onnx FROM ml.models",
        "SELECT * FROM ml.signals",
        "SELECT * FROM ml.features(ARRAY['MLAPI'], '1m')",
        "SELECT internal.onnx_run(1, '{0}', 1)",
        "SELECT * FROM ops.alerts",
        "SELECT * FROM trading.auto_trading",
        "UPDATE ml.models SET status = 'retired'",
    ):
        r = request(db, "trader", q, account_claim=w["alice"])
        assert (r.sqlstate, r.status) == ("42501", 403), q


def test_trader_reads_and_changes_only_its_own_settings(db, ml_world):
    w = ml_world
    alice, bob = w["alice"], w["bob"]
    assert request(db, "trader", "SELECT * FROM api.auto_trading", account_claim=alice).rows == []  # not configured
    mine = set_auto(
        db, "trader", alice, enabled=True, models=[w["direction"]], min_confidence=Decimal("0.3"), size_fraction="0.5"
    )
    assert mine.status == 200
    assert {k: mine.row[k] for k in SETTINGS} == {
        "enabled": True,
        "models": [w["direction"]],
        "min_confidence": Decimal("0.3"),
        "size_fraction": Decimal("0.5"),
        "use_brackets": True,
    }
    assert (mine.row["account"], mine.row["account_kind"], mine.row["paused"]) == (alice, "live", False)
    assert settings_of(db, w["ids"]["alice"]) == {k: mine.row[k] for k in SETTINGS}
    assert set_auto(db, "trader", bob, min_confidence="0.9").status == 200
    # each sees only its own row, and a filter on the other's account finds nothing
    seen = request(db, "trader", "SELECT account, min_confidence FROM api.auto_trading", account_claim=alice).rows
    assert seen == [{"account": alice, "min_confidence": Decimal("0.3")}]
    other = request(db, "trader", "SELECT * FROM api.auto_trading WHERE account = %s", (bob,), account_claim=alice)
    assert other.status == 200 and other.rows == []
    # changing another account's settings is refused and changes nothing
    bobs = settings_of(db, w["ids"]["bob"])
    r = set_auto(db, "trader", alice, enabled=True, account=bob)
    assert (r.sqlstate, r.status) == ("42501", 403)
    assert settings_of(db, w["ids"]["bob"]) == bobs
    # arguments left out keep their values
    again = set_auto(db, "trader", alice, use_brackets=False).row
    assert (again["enabled"], again["models"], again["use_brackets"]) == (True, [w["direction"]], False)
    # an empty list means every active model; a name given twice is kept once, in the order given
    assert set_auto(db, "trader", alice, models=[]).row["models"] == []
    assert set_auto(db, "trader", alice, models=[w["direction"], w["direction"]]).row["models"] == [w["direction"]]


def test_first_call_starts_from_the_tables_defaults(db, ml_world):
    w = ml_world
    with db.transaction(force_rollback=True):  # what a bare insert gets, for an account that is then rolled back
        probe = account(db, f"probe_{uuid.uuid4().hex[:6]}", kind="live", clock=None)
        db.execute("INSERT INTO trading.auto_trading (account_id) VALUES (%s)", (probe,))
        defaults = settings_of(db, probe)
    row = set_auto(db, "trader", w["alice"]).row
    assert {k: row[k] for k in SETTINGS} == defaults
    assert defaults["enabled"] is False


def test_trader_sees_market_wide_alerts_and_its_own(db, ml_world):
    w = ml_world
    ids = [w["alerts"][k] for k in ("market", "alice", "bob")]
    seen = request(
        db,
        "trader",
        "SELECT id, account FROM api.alerts WHERE id = ANY(%s) ORDER BY id",
        (ids,),
        account_claim=w["alice"],
    ).rows
    assert seen == [{"id": w["alerts"]["market"], "account": None}, {"id": w["alerts"]["alice"], "account": w["alice"]}]
    by_bob = request(db, "trader", "SELECT id FROM api.alerts WHERE id = ANY(%s)", (ids,), account_claim=w["bob"])
    assert {r["id"] for r in by_bob.rows} == {w["alerts"]["market"], w["alerts"]["bob"]}
    filtered = request(
        db, "trader", "SELECT id FROM api.alerts WHERE account = %s", (w["bob"],), account_claim=w["alice"]
    )
    assert filtered.status == 200 and filtered.rows == []
    anomaly = request(
        db,
        "trader",
        "SELECT a.anomaly_id, n.severity FROM api.alerts a JOIN api.anomalies n ON n.id = a.anomaly_id WHERE a.id = %s",
        (w["alerts"]["market"],),
        account_claim=w["alice"],
    ).row
    assert anomaly["severity"] == "HIGH"


@pytest.mark.parametrize(
    "claims", [{"role": "trader"}, {"role": "trader", "account": "nobody-here"}, {"role": "trader", "account": None}]
)
def test_trader_token_without_a_valid_account_is_403(db, ml_world, claims):
    w = ml_world
    set_auto(db, "trader", w["alice"], enabled=True)  # a settings row to filter
    for q in (
        "SELECT * FROM api.alerts",
        "SELECT * FROM api.alerts WHERE account_id IS NULL",  # even where only market-wide alerts would pass
        "SELECT * FROM api.auto_trading",
        "SELECT * FROM api.set_auto_trading(enabled => true)",
    ):
        r = request(db, "trader", q, claims=claims)
        assert (r.sqlstate, r.status) == ("28000", 403), q
    # market information needs no account
    assert request(db, "trader", "SELECT count(*) AS n FROM api.signals", claims=claims).status == 200


# --- administrator --------------------------------------------------------------------------------------------


def test_admin_reads_everything_and_sets_any_account(db, ml_world):
    w = ml_world
    alice, bob = w["alice"], w["bob"]
    set_auto(db, "trader", alice, enabled=True)
    r = set_auto(db, "pgtrade_admin", None, min_confidence="0.7", account=bob)
    assert r.status == 200 and (r.row["account"], r.row["min_confidence"]) == (bob, Decimal("0.7"))
    seen = request(
        db, "pgtrade_admin", "SELECT account FROM api.auto_trading WHERE account IN (%s, %s) ORDER BY 1", (alice, bob)
    ).rows
    assert [x["account"] for x in seen] == sorted([alice, bob])
    ids = list(w["alerts"].values())
    assert len(request(db, "pgtrade_admin", "SELECT id FROM api.alerts WHERE id = ANY(%s)", (ids,)).rows) == 3
    for view in ("models", "signals", "anomalies"):
        assert request(db, "pgtrade_admin", f"SELECT count(*) AS n FROM api.{view}").row["n"] >= 1, view
    # the claim names the account when no argument does; neither: TR013
    assert set_auto(db, "pgtrade_admin", alice, size_fraction="0.25").row["account"] == alice
    none = set_auto(db, "pgtrade_admin", None, enabled=False)
    assert (none.sqlstate, none.status) == ("TR013", 400)
    unknown = set_auto(db, "pgtrade_admin", None, enabled=False, account="nobody-here")
    assert (unknown.sqlstate, unknown.status) == ("TR013", 400)
    # an administrator reaches ml only through api too
    r = request(db, "pgtrade_admin", "SELECT onnx FROM ml.models LIMIT 1")
    assert (r.sqlstate, r.status) == ("42501", 403)


# --- bad settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"min_confidence": "-0.01"}, "ML042"),
        ({"min_confidence": "1.0001"}, "ML042"),
        ({"min_confidence": "NaN"}, "ML042"),
        ({"min_confidence": "Infinity"}, "ML042"),
        ({"size_fraction": "0"}, "ML042"),
        ({"size_fraction": "-0.5"}, "ML042"),
        ({"size_fraction": "1.5"}, "ML042"),
        ({"size_fraction": "NaN"}, "ML042"),
        ({"models": ["no_such_model"]}, "ML041"),
        ({"models": ["ANOMALY"]}, "ML041"),  # an anomaly model makes no direction signals
        ({"models": ["DIRECTION", None]}, "ML041"),
        ({"models": ["DIRECTION", ""]}, "ML041"),
        ({"enabled": True, "min_confidence": "0.5", "models": ["DIRECTION", "nope"]}, "ML041"),
    ],
)
def test_bad_settings_are_refused_with_their_code_and_change_nothing(db, ml_world, args, code):
    w = ml_world
    set_auto(db, "trader", w["alice"], enabled=False, models=[w["direction"]], min_confidence="0.4")
    before = settings_of(db, w["ids"]["alice"])
    names = {"DIRECTION": w["direction"], "ANOMALY": w["anomaly"]}
    if "models" in args:
        args = args | {"models": [names.get(m, m) for m in args["models"]]}
    r = set_auto(db, "trader", w["alice"], **args)
    assert (r.sqlstate, r.status) == (code, 400), r.message
    assert settings_of(db, w["ids"]["alice"]) == before
    if code == "ML041":  # the message names each offending name, not the good ones
        bad = [m for m in args["models"] if m != w["direction"]]
        for m in bad:
            assert ("NULL" if m is None else "'" + m.replace("'", "''") + "'") in r.message, (m, r.message)
        assert w["direction"] not in r.message


def test_injection_strings_in_model_names_are_data(db, ml_world):
    w = ml_world
    r = set_auto(db, "trader", w["alice"], models=INJECTIONS)
    assert (r.sqlstate, r.status) == ("ML041", 400)
    assert not injection_canary.fired(db), "a model name was executed as SQL"
    assert settings_of(db, w["ids"]["alice"]) is None


def test_settings_are_stored_exactly_as_the_engine_reads_them(db, ml_world):
    """The function writes trading.auto_trading, the table auto-trading reads: what the API returns is what is
    stored (boundary values included)."""
    w = ml_world
    for mc, sf in (("0", "1"), ("1", "0.0001"), ("0.55", "0.333")):
        row = set_auto(db, "trader", w["alice"], min_confidence=mc, size_fraction=sf).row
        stored = settings_of(db, w["ids"]["alice"])
        assert (
            (row["min_confidence"], row["size_fraction"])
            == (Decimal(mc), Decimal(sf))
            == (
                stored["min_confidence"],
                stored["size_fraction"],
            )
        )


# --- PostgREST filters on large tables reach the indexes ---------------------------------------------------------


def _plan(db, role, query, params=(), acct=None) -> str:
    r = request(db, role, "EXPLAIN (FORMAT JSON) " + query, params, account_claim=acct)
    assert r.status == 200, r.message
    return json.dumps(r.row["QUERY PLAN"])


def test_postgrest_filters_on_the_large_tables_use_their_indexes(db, ml_world):
    """100,000 signals, anomalies and alerts (analyzed): the reads a client makes (one series' newest signals, new
    signals / anomalies / alerts since a time or an id) are index scans through the views, as each role runs them.
    (A security-barrier view such as api.alerts is planned as a subquery: its filters reach the indexes, but an
    ORDER BY ... LIMIT with no filter sorts every visible row, so clients poll with ?id=gt.<last id>.)"""
    w = ml_world
    n = 100_000
    db.execute(
        "INSERT INTO ml.signals (model_id, symbol, interval, ts, probability, confidence, signal, close, created_at)"
        " SELECT %s, 'S' || (g %% 50), '1m', %s::timestamptz + g * interval '1 minute', 0.5, 0, 'HOLD', 1,"
        "        %s::timestamptz + g * interval '1 second'"
        " FROM generate_series(1, %s) g",
        (w["dir_id"], T0, T0, n),
    )
    db.execute(
        "INSERT INTO ml.anomalies (symbol, interval, ts, type, score, severity, detected_at)"
        " SELECT 'S' || (g %% 50), '1m', %s::timestamptz + g * interval '1 minute', 'price', 5, 'LOW',"
        "        %s::timestamptz + g * interval '1 second'"
        " FROM generate_series(1, %s) g",
        (T0, T0, n),
    )
    db.execute(
        "INSERT INTO ops.alerts (kind, severity, message, raised_at)"
        " SELECT 'anomaly', 'HIGH', 'x', %s::timestamptz + g * interval '1 second' FROM generate_series(1, %s) g",
        (T0, n),
    )
    db.execute("ANALYZE ml.signals, ml.anomalies, ops.alerts")
    last_alert = db.execute("SELECT max(id) FROM ops.alerts").fetchone()[0]
    since = T0 + timedelta(seconds=n - 50)
    cases = [
        (
            "web_anon",
            "SELECT * FROM api.signals WHERE symbol = 'S7' AND interval = '1m' ORDER BY ts DESC LIMIT 20",
            (),
            "signals_bar",
        ),
        (
            "web_anon",
            "SELECT * FROM api.signals WHERE created_at > %s ORDER BY created_at",
            (since,),
            "signals_created_at",
        ),
        (
            "web_anon",
            "SELECT * FROM api.anomalies WHERE detected_at > %s ORDER BY detected_at",
            (since,),
            "anomalies_detected_at",
        ),
        ("trader", "SELECT * FROM api.alerts WHERE raised_at > %s ORDER BY raised_at", (since,), "alerts_raised_at"),
        ("pgtrade_admin", "SELECT * FROM api.alerts WHERE raised_at > %s", (since,), "alerts_raised_at"),
        ("trader", "SELECT * FROM api.alerts WHERE id > %s ORDER BY id", (last_alert - 50,), "alerts_pkey"),
    ]
    for role, query, params, index in cases:
        plan = _plan(db, role, query, params, w["alice"] if role == "trader" else None)
        assert f'"Index Name": "{index}"' in plan, (role, query, plan)
