"""API load: many clients calling the `api` functions exactly as PostgREST does, while a live feed commits bars,
and the checks afterwards. Used by tests/test_load.py (short, every check) and bench/api_load_bench.py (figures).

A request is what PostgREST (v12) sends for one HTTP call: its own transaction (``BEGIN``, read-only for a GET),
the request's role, JWT claims and the role's own settings in one statement (``postgrest.begin_request``), the
view or function call wrapped the way PostgREST wraps it (the body is built by ``json_agg`` in the server, with
``response.status`` read in the same statement), ``COMMIT`` (``ROLLBACK`` on an error, whose SQLSTATE becomes the
HTTP status by ``postgrest.postgrest_status``). Clients log in as ``authenticator``, PostgREST's login role,
straight to the server or through a pooler (pgbouncer in transaction mode: no prepared statements, as PostgREST's
``db-prepared-statements = false``).

The clients run in a few processes (threads inside each), so the client side is not one Python interpreter's
lock. The feed is ``loaders.stream.Stream`` over ``loaders.synthetic.SyntheticMarket`` at real speed: the live
ingest path (``pgtrade stream --source synthetic``), so resting orders fill through the live bar trigger.
"""

from __future__ import annotations

import concurrent.futures
import configparser
import io
import json
import multiprocessing
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
from cluster_support import throwaway_cluster
from postgrest import begin_request, postgrest_status, role_settings
from psycopg.rows import dict_row
from trading_support import check_invariants

from loaders.sample import register_instrument
from loaders.stream import Stream, StreamConfig
from loaders.synthetic import SyntheticMarket, calibrate_from
from pgtrade.cluster import free_port

# What one client does per request, with weights (reads ~60%, writes ~40%). bars and health are anonymous
# (web_anon, like a public chart or a load balancer's probe); the rest carry a trader token for one account.
MIX: dict[str, int] = {
    "portfolio": 12,  # GET /portfolio
    "positions": 10,  # GET /positions?qty=neq.0
    "orders": 10,  # GET /orders?order=id.desc&limit=20
    "fills": 8,  # GET /fills?order=id.desc&limit=20
    "bars": 14,  # GET /bars?symbol=eq.S&interval=eq.1m&order=ts.desc&limit=30 (anonymous)
    "health": 2,  # GET /rpc/health (anonymous)
    "market": 20,  # POST /rpc/place_order, market (a third of them with a stop-loss / take-profit bracket)
    "limit": 16,  # POST /rpc/place_order, limit gtc near the last price
    "cancel": 8,  # POST /rpc/cancel_order, an open limit order this client placed
}
READS = ("portfolio", "positions", "orders", "fills", "bars", "health")
WRITES = ("market", "limit", "cancel")
# The rejections a risk rule records (docs/errors.md, "rejected order", HTTP 422) that this load provokes:
# cash, position to sell, position %, gross exposure, order value. Anything else (a malformed order, a stale
# price, an unknown symbol) would be a fault of the load or of the server.
RISK_REJECTIONS = frozenset({"TR001", "TR002", "TR003", "TR004", "TR005"})
# cancel_order racing a bar that filled the order first (or a fill-time guard that cancelled it): TR015, 400
CANCEL_TOO_LATE = "TR015"
ACCOUNT_RULES = {
    "max_position_pct": 10,
    "max_gross_leverage": 1,
    "max_order_value": 4000,
    "allow_short": False,
    "commission_rate": "0.0005",
    "commission_min": 1,
    "slippage_bps": 2,
}


@dataclass(frozen=True, kw_only=True)
class LoadConfig:
    clients: int = 100
    accounts: int = 40
    seconds: float = 60.0
    symbols: tuple[str, ...] = ("LDA", "LDB", "LDC", "LDD", "LDE", "LDF", "LDG", "LDH")
    processes: int = 4
    seed: int = 1
    #: feed: updates per symbol per minute (each a forming-bar upsert committed through the ingest path)
    updates_per_minute: int = 60
    #: the synthetic walk's per-minute volatility times this (resting orders near the price then cross often)
    vol_scale: float = 3.0
    history_minutes: int = 15
    #: seconds of the SELECT 1 reference loop (0: none)
    reference_seconds: float = 10.0
    #: start the load so that a minute boundary falls this many seconds into it (None: start at once). Live
    #: resting orders fill only on bars that open after they were accepted, so a short run must cross a minute.
    minute_boundary_at: float | None = None
    #: psycopg's prepare_threshold for the clients (None: never prepare, what a transaction pooler needs)
    prepare_threshold: int | None = 5


@dataclass
class Record:
    kind: str
    start: float  # seconds after the load started
    latency: float
    status: int
    sqlstate: str | None = None
    message: str | None = None
    order: dict | None = None  # place_order: what was sent and what came back; cancel_order: id and result


@dataclass
class LoadResult:
    config: LoadConfig
    run: str
    accounts: dict[str, int]
    records: list[Record]
    elapsed: float
    reference: list[Record] = field(default_factory=list)
    reference_elapsed: float = 0.0
    feed: dict = field(default_factory=dict)
    pooled: bool = False

    def summary(self) -> dict:
        out = {"clients": self.config.clients, "seconds": round(self.elapsed, 2), "pooled": self.pooled}
        out["overall"] = _stats(self.records, self.elapsed)
        out["reads"] = _stats([r for r in self.records if r.kind in READS], self.elapsed)
        out["writes"] = _stats([r for r in self.records if r.kind in WRITES], self.elapsed)
        out["per_kind"] = {k: _stats([r for r in self.records if r.kind == k], self.elapsed) for k in MIX}
        out["statuses"] = dict(sorted(Counter(str(r.status) for r in self.records).items()))
        out["reject_codes"] = dict(
            sorted(Counter(r.order["reject_code"] for r in self.records if r.status == 422).items())
        )
        if self.reference:
            ref = _stats(self.reference, self.reference_elapsed)
            out["reference_select1"] = ref
            out["ratio_to_reference"] = round(out["overall"]["rps"] / ref["rps"], 3) if ref["rps"] else None
        out["feed"] = self.feed
        return out


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _stats(records: list[Record], elapsed: float) -> dict:
    lat = [r.latency for r in records]
    if not lat:
        return {"n": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None}
    return {
        "n": len(lat),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(_pct(lat, 50) * 1000, 2),
        "p99_ms": round(_pct(lat, 99) * 1000, 2),
        "max_ms": round(max(lat) * 1000, 1),
    }


# ------------------------------------------------------------------------------------------------ setup
#: 100 clients, the feed, pg_cron's and TimescaleDB's workers, the checks: more than pgtrade's default 100
MAX_CONNECTIONS = 150


@contextmanager
def own_cluster(max_connections: int = MAX_CONNECTIONS, keep_log: Path | None = None) -> Iterator[str]:
    """A throwaway cluster of pgtrade's settings with room for the clients, migrated from db/; yields its superuser
    URL and destroys it afterwards (its server log copied to ``keep_log`` first, when given)."""
    overrides = (("max_connections", str(max_connections)), ("log_lock_waits", "on"))
    with throwaway_cluster("load", "pgtrade_load", overrides=overrides) as cluster:
        try:
            yield cluster.url()
        finally:
            if keep_log is not None and cluster.log_file.exists():
                shutil.copy(cluster.log_file, keep_log)


def authenticator_url(owner_url: str, password: str, *, host: str = "127.0.0.1", port: int | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(owner_url)
    return (
        f"postgresql://authenticator:{quote(password, safe='')}@{host}:{port or info.get('port', 5432)}"
        f"/{info['dbname']}?application_name=load-client"
    )


def set_authenticator_password(owner_url: str) -> str:
    """A random password for PostgREST's login role (a throwaway cluster's: the load logs in as PostgREST does)."""
    password = secrets.token_urlsafe(18)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("ALTER ROLE authenticator PASSWORD {}").format(psycopg.sql.Literal(password)))
    return password


def setup_accounts(owner_url: str, config: LoadConfig, run: str) -> dict[str, int]:
    """The symbols (24x7, as the synthetic feed registers them) and the live trader accounts of this run."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for sym in config.symbols:
            register_instrument(conn, symbol=sym, name="load test random walk", asset_class="crypto")
        accounts = {}
        for i in range(config.accounts):
            name = f"load-{run}-{i:02d}"
            accounts[name] = conn.execute(
                "SELECT id FROM trading.create_account(%s, 100000, 'live', NULL, %s::jsonb)",
                (name, json.dumps(ACCOUNT_RULES)),
            ).fetchone()[0]
        conn.execute("ANALYZE trading.accounts")
    return accounts


AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS public.load_order_audit (
  order_id bigint PRIMARY KEY, account_id bigint, symbol text, pos_qty numeric, pos_value numeric,
  total_value numeric, gross_exposure numeric, max_position_pct numeric, max_gross_leverage numeric);
CREATE OR REPLACE FUNCTION public.load_audit_order() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO public.load_order_audit
  SELECT NEW.id, NEW.account_id, NEW.symbol, coalesce(pv.qty, 0), coalesce(pv.value, 0), p.total_value,
         p.gross_exposure, a.max_position_pct, a.max_gross_leverage
  FROM trading.accounts a
  CROSS JOIN trading.portfolio(NEW.account_id) p
  LEFT JOIN trading.position_values pv ON pv.account_id = NEW.account_id AND pv.symbol = NEW.symbol
  WHERE a.id = NEW.account_id;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS zz_load_audit ON trading.orders;
CREATE TRIGGER zz_load_audit AFTER INSERT ON trading.orders FOR EACH ROW
  WHEN (NEW.source = 'manual' AND NEW.status = 'accepted') EXECUTE FUNCTION public.load_audit_order();
"""


def install_audit(owner_url: str) -> None:
    """Test only (a throwaway cluster): record, for every accepted manual order, the account's portfolio value,
    gross exposure and position in the symbol as the order's own transaction saw them when the order row was
    written (after the pre-trade checks, under the account lock, before a market order's fill), so the position
    limits can be checked afterwards against the exact values the checks used."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(AUDIT_SQL)


# ------------------------------------------------------------------------------------------------ pooler
PGBOUNCER = "/usr/sbin/pgbouncer"


PGBOUNCER_INI = Path(__file__).resolve().parent.parent / "docker" / "pgbouncer" / "pgbouncer.ini"


def pgbouncer_ini(*, server_port: int, dbname: str, listen_port: int, workdir: Path, pool_size: int | None) -> str:
    """docker/pgbouncer/pgbouncer.ini (what the compose service runs) with this machine's addresses, ports and
    paths; the pooling settings are the file's (``pool_size`` replaces its pool sizes, for a comparison)."""
    ini = configparser.ConfigParser(delimiters=("=",), comment_prefixes=(";",), interpolation=None)
    ini.read_string(PGBOUNCER_INI.read_text())
    ini["databases"] = {dbname: f"host=127.0.0.1 port={server_port} dbname={dbname}"}
    pgb = ini["pgbouncer"]
    pgb.update(
        listen_addr="127.0.0.1",
        listen_port=str(listen_port),
        auth_file=str(workdir / "userlist.txt"),
        logfile=str(workdir / "pgbouncer.log"),
        pidfile=str(workdir / "pgbouncer.pid"),
    )
    if pool_size is not None:
        pgb.update(default_pool_size=str(pool_size), max_db_connections=str(pool_size))
    out = io.StringIO()
    ini.write(out)
    return out.getvalue()


def pgbouncer_pool_size() -> int:
    ini = configparser.ConfigParser(delimiters=("=",), comment_prefixes=(";",), interpolation=None)
    ini.read_string(PGBOUNCER_INI.read_text())
    return int(ini["pgbouncer"]["default_pool_size"])


@contextmanager
def pgbouncer(owner_url: str, client_url: str, *, pool_size: int | None = None) -> Iterator[str]:
    """Debian's pgbouncer, natively, with docker/pgbouncer/pgbouncer.ini (transaction pooling) in front of the server
    of ``owner_url``; yields ``client_url`` pointed at it. The login's SCRAM secret is copied from pg_authid into
    the auth file (never a password in a file); pgbouncer logs in to the server with it for the client."""
    info = psycopg.conninfo.conninfo_to_dict(client_url)
    user, dbname = info["user"], info["dbname"]
    with psycopg.connect(owner_url) as conn:
        secret = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,)).fetchone()[0]
    workdir = Path(tempfile.mkdtemp(prefix="pgtrade-pgbouncer-", dir="/tmp"))
    port = free_port()
    (workdir / "userlist.txt").write_text(f'"{user}" "{secret}"\n')
    (workdir / "pgbouncer.ini").write_text(
        pgbouncer_ini(
            server_port=int(info["port"]), dbname=dbname, listen_port=port, pool_size=pool_size, workdir=workdir
        )
    )
    kw = {}
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        import pwd

        pg = pwd.getpwnam("postgres")
        for f in [workdir, *workdir.iterdir()]:
            os.chown(f, pg.pw_uid, pg.pw_gid)
        kw = {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": []}
    os.chmod(workdir / "userlist.txt", 0o600)
    proc = subprocess.Popen(
        [PGBOUNCER, str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kw
    )
    try:
        url = psycopg.conninfo.make_conninfo(client_url, host="127.0.0.1", port=str(port))
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(url, prepare_threshold=None, connect_timeout=3) as c:
                    c.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "pgbouncer.log").read_text() if (workdir / "pgbouncer.log").exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {log[-500:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ feed
class Feed:
    """The synthetic live feed in a thread: ``history_minutes`` of closed bars first (one batch), then forming-bar
    updates at real speed through ``loaders.stream.Stream`` (the ingest path, the live bar triggers)."""

    def __init__(self, owner_url: str, config: LoadConfig):
        now = datetime.now(UTC)
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=config.history_minutes)
        with psycopg.connect(owner_url) as conn:
            cal = calibrate_from(conn, "SPX")
        cal = replace(cal, vol=cal.vol * config.vol_scale)
        market = SyntheticMarket(
            config.symbols, cal, start=start, seed=config.seed, updates_per_minute=config.updates_per_minute
        )
        self.stream = Stream(
            StreamConfig(source="synthetic", symbols=config.symbols, updates_per_minute=config.updates_per_minute),
            url=owner_url,
            ticks=market.ticks(),
            source_name="synthetic",
            lead=(now - start).total_seconds(),
        )
        self.thread = threading.Thread(target=self._run, name="load-feed", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.stream.run()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def start(self, timeout: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while self.stream.stats.batches == 0:  # the history batch is in: market orders have a last price
            if self.error is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the feed did not start: {self.error!r}")
            time.sleep(0.05)

    def stop(self) -> dict:
        self.stream.stop()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise RuntimeError(f"the feed failed: {self.error!r}") from self.error
        s = self.stream.stats.summary()
        return {k: s[k] for k in ("updates", "batches", "inserted", "updated", "rejected", "db_errors", "latency_ms")}


def last_closes(owner_url: str, symbols: tuple[str, ...]) -> dict[str, str]:
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (symbol) symbol, close FROM market.bars WHERE symbol = ANY(%s) AND interval = '1m' "
            "ORDER BY symbol, ts DESC",
            (list(symbols),),
        ).fetchall()
    return {s: str(c) for s, c in rows}


# ------------------------------------------------------------------------------------------------ requests
def _wrap(source: str, *, single: bool = False) -> str:
    """The statement PostgREST builds around a read or an RPC call: the rows aggregated to the JSON body in the
    server, with response.headers / response.status read in the same statement."""
    body = (
        "coalesce((json_agg(_postgrest_t)->0)::text, 'null')"
        if single
        else "coalesce(json_agg(_postgrest_t), '[]')::text"
    )
    return (
        f"WITH pgrst_source AS ({source}) SELECT pg_catalog.count(_postgrest_t) AS page_total, {body} AS body, "
        "nullif(current_setting('response.headers', true), '') AS response_headers, "
        "nullif(current_setting('response.status', true), '') AS response_status "
        "FROM (SELECT * FROM pgrst_source) _postgrest_t"
    )


Q = {
    "portfolio": _wrap("SELECT * FROM api.portfolio"),
    "positions": _wrap("SELECT * FROM api.positions WHERE qty <> 0"),
    "orders": _wrap("SELECT * FROM api.orders ORDER BY id DESC LIMIT 20"),
    "fills": _wrap("SELECT * FROM api.fills ORDER BY id DESC LIMIT 20"),
    "bars": _wrap("SELECT * FROM api.bars WHERE symbol = %s AND interval = '1m' ORDER BY ts DESC LIMIT 30"),
    "health": _wrap("SELECT api.health() AS health", single=True),
    "place": _wrap(
        'SELECT * FROM api.place_order("symbol" => %(symbol)s, "side" => %(side)s, "qty" => %(qty)s::numeric, '
        '"type" => %(type)s, "limit_price" => %(limit_price)s::numeric, "tif" => %(tif)s, '
        '"client_order_id" => %(client_order_id)s, "stop_loss" => %(stop_loss)s::numeric, '
        '"take_profit" => %(take_profit)s::numeric)',
        single=True,
    ),
    "cancel": _wrap('SELECT * FROM api.cancel_order("order_id" => %s)', single=True),
    "reference": _wrap("SELECT 1 AS one", single=True),
}
GET = frozenset(READS) | {"reference"}


class Client:
    """One API client: one connection (PostgREST's pool slot, or a pooler's client), one account's token."""

    def __init__(self, idx: int, url: str, account: str, settings: dict, prices: dict, cfg: LoadConfig):
        self.idx, self.account, self.settings, self.cfg = idx, account, settings, cfg
        self.rng = random.Random(cfg.seed * 1000 + idx)
        self.prices = {s: Decimal(p) for s, p in prices.items()}
        self.open_limits: list[int] = []
        self.records: list[Record] = []
        self.conn = psycopg.connect(url, autocommit=True, prepare_threshold=cfg.prepare_threshold, connect_timeout=30)

    def request(self, kind: str, role: str, query: str, params=()) -> tuple[Record, object]:
        claims = {"role": role} | ({"account": self.account} if role == "trader" else {})
        conn = self.conn
        t = time.perf_counter()
        try:
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY" if kind in GET else "BEGIN")
            begin_request(conn, role, claims, self.settings[role])
            row = conn.execute(query, params).fetchone()
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            if not conn.broken:
                conn.execute("ROLLBACK")
            state = exc.sqlstate or "08006"  # no SQLSTATE: the connection failed (PostgREST answers 503)
            rec = Record(kind, t, time.perf_counter() - t, postgrest_status(state, role != "web_anon"), state)
            rec.message = (exc.diag.message_primary if exc.sqlstate else str(exc))[:300]
            return rec, None
        latency = time.perf_counter() - t
        status = int(row[3]) if row[3] else 200
        return Record(kind, t, latency, status), json.loads(row[1], parse_float=Decimal)

    def step(self) -> Record:
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "cancel" and not self.open_limits:
            kind = "limit"
        if kind in ("bars", "health"):
            sym = self.rng.choice(self.cfg.symbols)
            rec, body = self.request(kind, "web_anon", Q[kind], (sym,) if kind == "bars" else ())
            if kind == "bars" and body:
                self.prices[sym] = body[0]["close"]
            return rec
        if kind in READS:
            return self.request(kind, "trader", Q[kind])[0]
        if kind == "cancel":
            oid = self.open_limits.pop(self.rng.randrange(len(self.open_limits)))
            rec, body = self.request(kind, "trader", Q["cancel"], (oid,))
            rec.order = {"id": oid, "status": body["status"] if body else None}
            return rec
        sym = self.rng.choice(self.cfg.symbols)
        side = "buy" if self.rng.random() < 0.6 else "sell"
        last = self.prices[sym]
        order = {
            "symbol": sym,
            "side": side,
            "qty": self.rng.randint(1, 10),
            "type": kind,
            "limit_price": None,
            "tif": "gtc",
            "client_order_id": f"c{self.idx}-{uuid.uuid4().hex[:12]}",
            "stop_loss": None,
            "take_profit": None,
        }
        if kind == "limit":  # a few basis points inside the market: the walk crosses it within a minute or two
            off = Decimal(self.rng.uniform(0, 0.002))
            px = last * (1 - off) if side == "buy" else last * (1 + off)
            order["limit_price"] = px.quantize(Decimal("0.01"), ROUND_HALF_UP)
        elif side == "buy" and self.rng.random() < 1 / 3:  # a bracket: children rest and fill through the trigger
            order["stop_loss"] = (last * Decimal("0.98")).quantize(Decimal("0.01"))
            order["take_profit"] = (last * Decimal("1.02")).quantize(Decimal("0.01"))
        rec, body = self.request(kind, "trader", Q["place"], order)
        rec.order = order | {"account": self.account}
        if body:
            rec.order |= {"id": body["id"], "status": body["status"], "reject_code": body["reject_code"]}
            if kind == "limit" and body["status"] in ("accepted", "partially_filled"):
                self.open_limits.append(body["id"])
        return rec

    def loop(self, start_at: float, stop_at: float, only: str | None) -> None:
        while time.time() < start_at:
            time.sleep(min(0.05, max(0.0, start_at - time.time())))
        t0 = time.perf_counter() - (time.time() - start_at)
        while time.time() < stop_at:
            if only == "reference":
                rec = self.request("reference", "web_anon", Q["reference"])[0]
            else:
                rec = self.step()
            rec.start -= t0
            self.records.append(rec)


def run_clients(
    indices: list[int],
    url: str,
    accounts: list[str],
    settings: dict,
    prices: dict,
    cfg: LoadConfig,
    start_at: float,
    stop_at: float,
    only: str | None = None,
) -> list[Record]:
    """One worker process: a thread per client, all starting at ``start_at`` (wall clock), until ``stop_at``."""
    clients = [Client(i, url, accounts[i % len(accounts)], settings, prices, cfg) for i in indices]
    threads = [threading.Thread(target=c.loop, args=(start_at, stop_at, only)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.conn.close()
    return [r for c in clients for r in c.records]


def _phase(pool, cfg: LoadConfig, url: str, accounts, settings, prices, seconds: float, only=None, lead=None):
    """Run every client for ``seconds``; connections are made before the start (not timed)."""
    connect_time = 5.0 + cfg.clients * 0.1
    start_at = time.time() + connect_time
    if lead is not None:  # put a minute boundary ``lead`` seconds into the phase
        boundary = (int(start_at) // 60 + 1) * 60
        start_at = boundary - lead if boundary - lead >= start_at else boundary + 60 - lead
    stop_at = start_at + seconds
    chunks = [list(range(cfg.clients))[i :: cfg.processes] for i in range(cfg.processes)]
    futures = [
        pool.submit(run_clients, c, url, accounts, settings, prices, cfg, start_at, stop_at, only) for c in chunks if c
    ]
    records = [r for f in futures for r in f.result()]
    return records, stop_at - start_at


def read_role_settings(owner_url: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(owner_url) as conn:
        return {role: role_settings(conn, role) for role in ("web_anon", "trader")}


def run_load(owner_url: str, client_url: str, config: LoadConfig, *, pooled: bool = False, audit: bool = False):
    """Set up accounts, measure the SELECT 1 reference, start the feed, run the mix, stop the feed. The checks are
    ``verify``'s."""
    run = uuid.uuid4().hex[:6]
    accounts = setup_accounts(owner_url, config, run)
    if audit:
        install_audit(owner_url)
    settings = read_role_settings(owner_url)
    names = list(accounts)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=config.processes, mp_context=ctx) as pool:
        reference, ref_elapsed = [], 0.0
        if config.reference_seconds:
            reference, ref_elapsed = _phase(
                pool, config, client_url, names, settings, {}, config.reference_seconds, only="reference"
            )
        feed = Feed(owner_url, config)
        feed.start()
        try:
            prices = last_closes(owner_url, config.symbols)
            records, elapsed = _phase(
                pool, config, client_url, names, settings, prices, config.seconds, lead=config.minute_boundary_at
            )
        finally:
            feed_stats = feed.stop()
    return LoadResult(
        config=config,
        run=run,
        accounts=accounts,
        records=records,
        elapsed=elapsed,
        reference=reference,
        reference_elapsed=ref_elapsed,
        feed=feed_stats,
        pooled=pooled,
    )


# ------------------------------------------------------------------------------------------------ checks
def unexpected(records: list[Record], tolerate: frozenset[str] = frozenset()) -> list[Record]:
    """Every response that is not a success or a clear risk rejection (nor an SQLSTATE in ``tolerate``)."""
    bad = []
    for r in records:
        if r.sqlstate in tolerate:
            continue
        if r.kind in READS or r.kind == "reference":
            ok = r.status == 200
        elif r.kind in ("market", "limit"):
            ok = (r.status == 200 and r.order.get("status") in ("accepted", "filled", "partially_filled")) or (
                r.status == 422
                and r.order.get("status") == "rejected"
                and r.order.get("reject_code") in RISK_REJECTIONS
            )
        else:  # cancel
            ok = (r.status == 200 and r.order.get("status") == "cancelled") or (
                r.status == 400 and r.sqlstate == CANCEL_TOO_LATE
            )
        if not ok:
            bad.append(r)
    return bad


def verify(owner_url: str, result: LoadResult, *, audit: bool = False, tolerate: frozenset[str] = frozenset()) -> dict:
    """The checks after a load. Returns counts and ``problems`` (empty when everything holds). ``tolerate``:
    SQLSTATEs counted (``tolerated``) instead of reported; their requests must have left nothing behind (the
    both-ways order count checks that)."""
    problems: list[str] = []
    for r in unexpected(result.records, tolerate)[:20]:
        problems.append(f"unexpected response: {r.kind} {r.status} {r.sqlstate} {r.message} {r.order}")
    n_bad = len(unexpected(result.records, tolerate))
    if n_bad > 20:
        problems.append(f"... {n_bad} unexpected responses in all")
    ids = list(result.accounts.values())
    placed = [r for r in result.records if r.kind in ("market", "limit") and r.status in (200, 422)]
    acked = {r.order["id"]: r.order for r in placed}
    cancelled = {r.order["id"] for r in result.records if r.kind == "cancel" and r.status == 200}
    with psycopg.connect(owner_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        db_orders = {
            o["id"]: o
            for o in cur.execute(
                "SELECT o.id, a.name AS account, o.client_order_id, o.symbol, o.side, o.type, o.qty, o.limit_price,"
                " o.status, o.reject_code, o.filled_qty, o.status_reason"
                " FROM trading.orders o JOIN trading.accounts a ON a.id = o.account_id"
                " WHERE o.account_id = ANY(%s) AND o.source = 'manual'",
                (ids,),
            )
        }
        # no lost write, both ways: every acknowledged order is stored as sent; every stored order was acknowledged
        for oid, sent in acked.items():
            o = db_orders.get(oid)
            if o is None:
                problems.append(f"order {oid} acknowledged to a client is not in trading.orders")
                continue
            want = (sent["account"], sent["client_order_id"], sent["symbol"], sent["side"], Decimal(sent["qty"]))
            got = (o["account"], o["client_order_id"], o["symbol"], o["side"], o["qty"])
            if want != got:
                problems.append(f"order {oid} stored as {got}, sent as {want}")
            if (sent["status"] == "rejected") != (o["status"] == "rejected") or (
                sent["status"] == "rejected" and sent["reject_code"] != o["reject_code"]
            ):
                problems.append(f"order {oid} answered {sent['status']}/{sent['reject_code']}, stored {o['status']}")
            if sent["status"] == "filled" and o["filled_qty"] != o["qty"]:
                problems.append(f"order {oid} answered filled, stored filled_qty {o['filled_qty']} of {o['qty']}")
        for oid in db_orders.keys() - acked.keys():
            problems.append(f"order {oid} in trading.orders was never acknowledged to a client")
        for oid in cancelled:
            if db_orders.get(oid, {}).get("status") != "cancelled":
                problems.append(f"order {oid}: cancel acknowledged, stored {db_orders.get(oid, {}).get('status')}")
        on_request = {
            oid
            for oid, o in db_orders.items()
            if o["status"] == "cancelled" and o["status_reason"] == "cancelled on request"
        }
        if on_request != cancelled:
            problems.append(f"cancelled on request but not acknowledged: {sorted(on_request - cancelled)[:10]}")
        # every fill counted: each order's fills sum to its filled_qty, each fill has its event and vice versa
        fills = cur.execute(
            "SELECT count(*) AS n, count(*) FILTER (WHERE f.bar_ts IS NOT NULL) AS by_bars,"
            " count(*) FILTER (WHERE o.source <> 'manual') AS brackets,"
            " (SELECT count(*) FROM trading.events e WHERE e.account_id = ANY(%(a)s) AND e.kind = 'fill') AS events"
            " FROM trading.fills f JOIN trading.orders o ON o.id = f.order_id WHERE f.account_id = ANY(%(a)s)",
            {"a": ids},
        ).fetchone()
        if fills["n"] != fills["events"]:
            problems.append(f"{fills['n']} fills but {fills['events']} fill events")
        mismatched = cur.execute(
            "SELECT o.id, o.filled_qty, coalesce(sum(f.qty), 0) AS q FROM trading.orders o"
            " LEFT JOIN trading.fills f ON f.order_id = o.id WHERE o.account_id = ANY(%s)"
            " GROUP BY o.id HAVING o.filled_qty <> coalesce(sum(f.qty), 0)",
            (ids,),
        ).fetchall()
        for m in mismatched[:10]:
            problems.append(f"order {m['id']}: filled_qty {m['filled_qty']} but fills sum to {m['q']}")
        # the P&L identity, the position replay and the cash ledger, per account (tests/trading_support.py)
        for name, aid in result.accounts.items():
            try:
                check_invariants(conn, aid)
            except AssertionError as exc:
                problems.append(f"account {name}: P&L identity / ledger does not hold: {exc!s:.300}")
        # account rules: cash never below zero at any point of the ledger (leverage 1), no position ever short,
        # every accepted order within max_order_value at its estimated price
        neg_cash = cur.execute(
            "SELECT account_id, min(balance) AS b FROM trading.cash_ledger WHERE account_id = ANY(%s)"
            " GROUP BY account_id HAVING min(balance) < 0",
            (ids,),
        ).fetchall()
        problems += [f"account {r['account_id']}: cash went to {r['b']}" for r in neg_cash]
        short = cur.execute(
            "SELECT account_id, symbol, min(q) AS q FROM (SELECT account_id, symbol,"
            " sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) OVER (PARTITION BY account_id, symbol ORDER BY id) AS q"
            " FROM trading.fills WHERE account_id = ANY(%s)) x GROUP BY 1, 2 HAVING min(q) < 0",
            (ids,),
        ).fetchall()
        problems += [f"account {r['account_id']} went short {r['symbol']} ({r['q']})" for r in short]
        too_big = cur.execute(
            "SELECT o.id, o.qty * o.est_price AS v, a.max_order_value AS lim FROM trading.orders o"
            " JOIN trading.accounts a ON a.id = o.account_id WHERE o.account_id = ANY(%s) AND o.source = 'manual'"
            " AND o.status <> 'rejected' AND o.qty * o.est_price > a.max_order_value",
            (ids,),
        ).fetchall()
        problems += [f"order {r['id']} worth {r['v']} accepted over max_order_value {r['lim']}" for r in too_big]
        audited = 0
        if audit:
            # position % and gross exposure at placement, on the values the order's transaction saw
            rows = cur.execute(
                "SELECT o.id, o.side, o.qty, o.est_price, x.* FROM public.load_order_audit x"
                " JOIN trading.orders o ON o.id = x.order_id WHERE o.account_id = ANY(%s)",
                (ids,),
            ).fetchall()
            audited = len(rows)
            for x in rows:
                result_qty = x["pos_qty"] + (x["qty"] if x["side"] == "buy" else -x["qty"])
                if abs(result_qty) <= abs(x["pos_qty"]):
                    continue  # the rule applies when an order increases the position
                value = abs(result_qty) * x["est_price"]
                if value > x["max_position_pct"] / 100 * x["total_value"]:
                    problems.append(
                        f"order {x['id']}: position {value} over {x['max_position_pct']}% of {x['total_value']}"
                    )
                if x["gross_exposure"] - abs(x["pos_value"]) + value > x["max_gross_leverage"] * x["total_value"]:
                    problems.append(f"order {x['id']}: gross exposure over {x['max_gross_leverage']}x")
            missing = {o for o, v in db_orders.items() if v["status"] != "rejected"} - {x["id"] for x in rows}
            if missing:
                problems.append(f"accepted orders without an audit row: {sorted(missing)[:10]}")
        api_fills, trader_settings = 0, role_settings(conn, "trader")
        for name in result.accounts:  # what a client reads back through the API is what the ledger holds
            conn.execute("BEGIN")
            begin_request(conn, "trader", {"role": "trader", "account": name}, trader_settings)
            api_fills += conn.execute("SELECT count(*) FROM api.fills").fetchone()[0]
            conn.rollback()
        if api_fills != fills["n"]:
            problems.append(f"api.fills shows {api_fills} fills, trading.fills holds {fills['n']}")
    statuses = Counter(o["status"] for o in db_orders.values())
    return {
        "problems": problems,
        "orders_acknowledged": len(acked),
        "orders_stored": len(db_orders),
        "order_statuses": dict(statuses),
        "cancels_acknowledged": len(cancelled),
        "fills": fills["n"],
        "fills_by_bars": fills["by_bars"],
        "bracket_fills": fills["brackets"],
        "audited_orders": audited,
        "accounts_checked": len(result.accounts),
        "tolerated": dict(Counter(r.sqlstate for r in result.records if r.sqlstate in tolerate)),
        "errors": dict(Counter(r.sqlstate for r in result.records if r.sqlstate)),
    }


def machine_load() -> dict:
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
