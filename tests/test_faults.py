"""Faults (issue 14, section 6), each on a server of its own (pgtrade.cluster.Cluster, migrated as the test session's,
pg_cron serving its database), killed with SIGKILL and restarted as an operator would: wait for the old server's
processes to exit (they do once the postmaster is gone), start it again (crash recovery), check what is left.

- The postmaster killed during ingest (a real ``pgtrade stream --source replay`` feed, live accounts holding
  positions and resting orders, a client committing orders): every fill a client saw committed is there, no bar is
  stored twice, the P&L identity and the ledger hold, resting orders rest or filled consistently, the running feed
  rides the restart out, and a feed killed itself and started again with ``--resume`` continues exactly after the
  last bar stored (the replayed history is the stored history, at consecutive minutes, without gap or repeat).
- A backtest's backend killed (pg_terminate_backend, SIGKILL of the process: the postmaster then restarts every
  backend), a grid's driving process killed, an API request killed: the run is marked failed
  (backtest.fail_interrupted_runs), never half-written as done; the killed API request leaves nothing.
- The postmaster killed during a pg_cron job and backtests: pg_cron records that run failed, its transaction left
  nothing, the job runs again on its schedule, and the watcher job (pgtrade-ops-watch) marks the runs failed.

Figures (crash recovery from the server log, time until the feed stored bars again, counts) are printed with -s and
are those of docs/reliability.md, section Faults.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from cluster_support import throwaway_cluster
from test_api import request
from trading_support import account, check_invariants, instrument
from waiting import eventually

from pgtrade.cluster import Cluster
from pgtrade.ingest import Bar, ingest

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("FLTA", "FLTB", "FLTC")
INTERRUPTED = "interrupted (server restart or backend killed)"


# ------------------------------------------------------------------------------------------------ the server
@dataclass
class Server:
    cluster: Cluster
    url: str
    procs: list[subprocess.Popen] = field(default_factory=list)  # started for the test: killed at its end

    def connect(self, **kw) -> psycopg.Connection:
        return psycopg.connect(self.url, connect_timeout=5, **kw)

    def postmaster_pid(self) -> int:
        return int((self.cluster.data_dir / "postmaster.pid").read_text().split()[0])

    def log_size(self) -> int:
        return self.cluster.log_file.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.cluster.log_file.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")


@contextmanager
def own_server(name: str) -> Iterator[Server]:
    """A throwaway server of this test's own, migrated from this worktree's db/, pg_cron serving its database."""
    procs: list[subprocess.Popen] = []
    with throwaway_cluster(f"fault-{name}", "pgtrade_faults") as cluster:
        try:
            yield Server(cluster, cluster.url(), procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def crash(server: Server) -> tuple[float, float]:
    """SIGKILL the postmaster; wait (bounded) until every process of the old server has exited, as an operator must
    before a restart (a new postmaster refuses a data directory whose shared memory old processes still hold).
    Returns (the kill's monotonic time, seconds until the last old process was gone)."""
    pm = server.postmaster_pid()
    old = _children(pm)
    t0 = time.monotonic()
    os.kill(pm, signal.SIGKILL)
    # the postmaster gone for good, not a zombie: a new one takes a pid file naming a pid kill(pid, 0) still finds
    # as another server's
    eventually(
        lambda: not Path(f"/proc/{pm}").exists() and not any(_alive(p) for p in old),
        timeout=60,
        what="the old server processes to exit",
    )
    return t0, time.monotonic() - t0


@dataclass
class Recovery:
    restart_s: float  # pg_ctl start until it accepts connections
    redo_s: float | None  # "redo done ... elapsed" of the log
    log_span_s: float | None  # first recovery line to "ready to accept connections", by the log's timestamps


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC", re.M)


def _log_span(text: str, first: str, last: str) -> float | None:
    times = {}
    for line in text.splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        for key in (first, last):
            if key in line and key not in times:
                times[key] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    if first in times and last in times:
        return round((times[last] - times[first]).total_seconds(), 3)
    return None


def _redo(text: str) -> float | None:
    m = re.search(r"redo done at .*elapsed: ([\d.]+) s", text)
    return float(m.group(1)) if m else None


def restart(server: Server) -> Recovery:
    """Start the killed server again; crash recovery runs first. Measured from the log it writes."""
    offset = server.log_size()
    t0 = time.monotonic()
    server.cluster.start()
    restart_s = time.monotonic() - t0
    text = server.log_since(offset)
    assert "automatic recovery in progress" in text, text[-2000:]
    return Recovery(
        round(restart_s, 3),
        _redo(text),
        _log_span(text, "database system was interrupted", "database system is ready to accept connections"),
    )


def report(what: str, **figures) -> None:
    print(f"\n[faults] {what}: " + json.dumps(figures, default=str))


def cli(server: Server, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PGTRADE_DATABASE_URL": server.url, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgtrade.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    server.procs.append(proc)
    return proc


def daily_history(conn: psycopg.Connection, symbols, *, days: int, seed: int = 14) -> dict[str, list[Decimal]]:
    """A seeded random walk of daily bars per symbol (24/7 instruments, so orders are accepted at any hour);
    returns each symbol's closes in order."""
    rng = random.Random(seed)
    closes: dict[str, list[Decimal]] = {}
    for sym in symbols:
        instrument(conn, sym, session_tz="UTC", session_open=None, session_close=None, trades_weekends=True)
        price, items = 100.0, []
        for i in range(days):
            o = price
            price = max(1.0, price * (1 + rng.gauss(0, 0.01)))
            hi, lo = max(o, price) * 1.002, min(o, price) * 0.998
            items.append(
                Bar(
                    sym,
                    "1d",
                    datetime(2010, 1, 1, tzinfo=UTC) + timedelta(days=i),
                    round(o, 4),
                    round(hi, 4),
                    round(lo, 4),
                    round(price, 4),
                    1000 + i,
                )  # fmt: skip
            )
        report_ = ingest(conn, items, source="test:history")
        assert report_.total.rejected == 0
        closes[sym] = [Decimal(str(b.close)) for b in items]
    conn.commit()
    return closes


# ------------------------------------------------------------------------------------------------ 1. ingest
class Trader(threading.Thread):
    """A client committing market orders on live accounts until stopped or the server goes away; it keeps what it
    saw committed: the fills of each order whose COMMIT returned."""

    def __init__(self, url: str, accounts: list[int]):
        super().__init__(daemon=True)
        self.url, self.accounts = url, accounts
        self.seen: dict[int, tuple] = {}  # fill id -> (order id, account, symbol, side, qty, price)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        try:
            with psycopg.connect(self.url) as conn:
                while not self.stop.is_set():
                    a, sym = rng.choice(self.accounts), rng.choice(SYMBOLS)
                    side = rng.choice(("buy", "sell"))
                    o = conn.execute(
                        "SELECT id, status FROM trading.place_order(%s, %s, %s, %s::numeric, 'market')",
                        (a, sym, side, rng.randint(1, 5)),
                    ).fetchone()
                    rows = conn.execute(
                        "SELECT id, order_id, account_id, symbol, side, qty, price FROM trading.fills "
                        "WHERE order_id = %s",
                        (o[0],),
                    ).fetchall()
                    conn.commit()  # returned: the client saw these committed
                    for r in rows:
                        self.seen[r[0]] = r[1:]
                    time.sleep(0.02)
        except psycopg.OperationalError as exc:  # the server went away
            self.error = exc


def replayed(conn: psycopg.Connection, sym: str) -> list[tuple]:
    return conn.execute(
        "SELECT ts, close FROM market.bars WHERE symbol = %s AND interval = '1m' AND source LIKE 'replay:%%' "
        "ORDER BY ts",
        (sym,),
    ).fetchall()


def replayed_count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute(
                "SELECT count(*) FROM market.bars WHERE interval = '1m' AND source LIKE 'replay:%%'"
            ).fetchone()[0]
    except psycopg.OperationalError:
        return -1


def check_replay_is_the_history(conn: psycopg.Connection, closes: dict[str, list[Decimal]]) -> dict[str, int]:
    """Each symbol's replayed 1m bars are its stored history's first n bars, in order, at consecutive minutes: no bar
    lost, none repeated, no gap. Returns n per symbol."""
    out = {}
    for sym in SYMBOLS:
        rows = replayed(conn, sym)
        assert rows, sym
        first = rows[0][0]
        assert [ts for ts, _ in rows] == [first + timedelta(minutes=i) for i in range(len(rows))], f"{sym}: a gap"
        assert [c for _, c in rows] == closes[sym][: len(rows)], f"{sym}: the replay is not the history in order"
        out[sym] = len(rows)
    dup = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM market.bars GROUP BY symbol, interval, ts HAVING count(*) > 1) d"
    ).fetchone()[0]
    assert dup == 0  # across all chunks of the hypertable
    return out


def test_postmaster_killed_during_ingest_with_live_accounts(capfd):
    with own_server("ingest") as server:
        with server.connect() as conn:
            closes = daily_history(conn, SYMBOLS, days=2000)
            accounts = [account(conn, f"fault-live-{i}", kind="live", clock=None, max_price_age=None) for i in range(2)]
            conn.commit()
        # a first feed: prices for the accounts (ending 20 hours ago: the crash run follows it with --resume)
        warm = cli(server, "stream", "--source", "replay", "--symbols", ",".join(SYMBOLS), "--speed", "6000",
                   "--max-bars", "30", "--ends-ago", "1200", "--json")  # fmt: skip
        out, err = warm.communicate(timeout=120)
        assert warm.returncode == 0, err
        with server.connect() as conn:
            resting = []
            for a in accounts:
                for sym in SYMBOLS:
                    o = conn.execute(
                        "SELECT id, status FROM trading.place_order(%s, %s, 'buy', 10::numeric, 'market')", (a, sym)
                    ).fetchone()
                    assert o[1] == "filled", o
                    for side, price in (("buy", "1"), ("sell", "100000")):  # far away: they rest
                        o = conn.execute(
                            "SELECT id, status FROM trading.place_order(%s, %s, %s, 1::numeric, 'limit', %s::numeric)",
                            (a, sym, side, price),
                        ).fetchone()
                        assert o[1] == "accepted", o
                        resting.append(o[0])
            conn.commit()

        # the feed that the crash hits: 30 bars a second for ~2 minutes, resumed after the first feed
        feed = cli(server, "stream", "--source", "replay", "--symbols", ",".join(SYMBOLS), "--speed", "600",
                   "--max-bars", "9000", "--resume", "--json")  # fmt: skip
        trader = Trader(server.url, accounts)
        trader.start()
        eventually(lambda: replayed_count(server.url) >= 30 + 60, timeout=60, what="the feed to store 60 bars")
        eventually(lambda: len(trader.seen) >= 10, timeout=30, what="the client to see 10 fills committed")
        before_bars = replayed_count(server.url)
        kill_wall = datetime.now(UTC)
        killed_at, exit_s = crash(server)
        trader.join(timeout=30)
        assert not trader.is_alive() and isinstance(trader.error, psycopg.OperationalError)
        rec = restart(server)
        # the running feed reconnects and resends its batch (its retry policy); time until it stores bars again
        eventually(lambda: replayed_count(server.url) > before_bars, timeout=60, what="the feed to store bars again")
        feed_back_s = round(time.monotonic() - killed_at, 3)
        assert feed.poll() is None  # it rode the restart out

        with server.connect() as conn:
            # every bar seen committed before the kill is there (stored by transactions begun before it)
            survived = conn.execute(
                "SELECT count(*) FROM market.bars WHERE interval = '1m' AND source LIKE 'replay:%%' "
                "AND ingested_at < %s",
                (kill_wall,),
            ).fetchone()[0]
            assert survived >= before_bars
            n_fills = conn.execute("SELECT count(*) FROM trading.fills").fetchone()[0]
            # every fill a client saw committed is there, as it saw it
            stored_fills = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT id, order_id, account_id, symbol, side, qty, price FROM trading.fills WHERE id = ANY(%s)",
                    (list(trader.seen),),
                )
            }
            assert stored_fills == trader.seen
            for a in accounts:
                check_invariants(conn, a)
            # resting orders rest, or filled consistently with their fills
            for oid, status, qty, filled in conn.execute(
                "SELECT o.id, o.status, o.qty, o.filled_qty FROM trading.orders o WHERE o.id = ANY(%s)", (resting,)
            ):
                got = conn.execute(
                    "SELECT coalesce(sum(qty), 0) FROM trading.fills WHERE order_id = %s", (oid,)
                ).fetchone()[0]
                assert got == filled and (status == "accepted" and filled == 0 or status != "accepted"), oid
                assert status in ("accepted", "partially_filled", "filled") and filled <= qty
            n1 = check_replay_is_the_history(conn, closes)

        # now the feed itself dies (SIGKILL, mid-run); started again with --resume it continues after the last bar
        feed.kill()
        feed.communicate(timeout=30)
        with server.connect() as conn:
            last = {sym: replayed(conn, sym)[-1][0] for sym in SYMBOLS}
            n2 = check_replay_is_the_history(conn, closes)
        t0 = time.monotonic()
        again = cli(server, "stream", "--source", "replay", "--symbols", ",".join(SYMBOLS), "--speed", "600",
                    "--max-bars", "60", "--resume", "--json")  # fmt: skip
        out, err = again.communicate(timeout=120)
        resume_s = round(time.monotonic() - t0, 3)
        assert again.returncode == 0, err
        stats = json.loads(out)
        assert stats["inserted"] == 60 and stats["updated"] == 0 and stats["rejected"] == 0, stats
        with server.connect() as conn:
            for sym in SYMBOLS:
                assert replayed(conn, sym)[len(replayed(conn, sym)) - 20][0] == last[sym] + timedelta(minutes=1)
            n3 = check_replay_is_the_history(conn, closes)
            for a in accounts:
                check_invariants(conn, a)
        assert all(n3[s] == n2[s] + 20 for s in SYMBOLS)
        with capfd.disabled():
            report(
                "postmaster SIGKILL during ingest",
                replayed_bars_seen_before_kill=before_bars,
                replayed_bars_stored_before_kill=survived,
                replayed_bars_after_restart=sum(n1.values()),
                client_fills_seen=len(trader.seen),
                fills_after_restart=n_fills,
                old_processes_exit_s=round(exit_s, 3),
                pg_ctl_start_s=rec.restart_s,
                redo_s=rec.redo_s,
                recovery_log_span_s=rec.log_span_s,
                kill_to_feed_storing_again_s=feed_back_s,
                feed_killed_at_bars=sum(n2.values()),
                resumed_run_s=resume_s,
                after_resume_bars=sum(n3.values()),
            )


# ------------------------------------------------------------------------------------------------ 2. backtests
SLOW_STRATEGY = """
CREATE FUNCTION public.fault_slow(run backtest.runs) RETURNS SETOF backtest.decision LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(coalesce((run.params->>'sleep')::float, 0));  -- the test kills the run here
  RETURN QUERY SELECT * FROM backtest.sma_crossover(run);
END $$;
GRANT EXECUTE ON FUNCTION public.fault_slow TO pgtrade_owner;  -- api.run_backtest runs as the owner
SELECT backtest.register_strategy('fault_slow', 'public.fault_slow(backtest.runs)',
  'sma_crossover after a pause (the fault tests kill runs during it)', '{"fast": 10, "slow": 20, "sleep": 0}',
  '{"fast": [5, 10], "slow": [20, 50]}');
"""


def slow_world(server: Server) -> None:
    with server.connect() as conn:
        daily_history(conn, ["FLTBT"], days=1500)
        conn.execute(SLOW_STRATEGY)
        conn.commit()


def sleeping_backends(conn: psycopg.Connection) -> set[int]:
    """The pids of the backends inside the slow strategy's pg_sleep."""
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query ~ 'backtest'")
    return {r[0] for r in rows}


def run_row(conn: psycopg.Connection, run_id: int) -> dict:
    cur = conn.execute(
        "SELECT id, status, error, account_id, backend_pid, (SELECT count(*) FROM backtest.decisions d "
        "WHERE d.run_id = r.id) AS decisions FROM backtest.runs r WHERE id = %s",
        (run_id,),
    )
    return dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))


def backtest_cli(server: Server, sleep: float) -> subprocess.Popen:
    return cli(server, "backtest", "run", "--strategy", "fault_slow", "--symbols", "FLTBT", "--start", "2010-01-01",
               "--end", "2014-01-01", "--param", f"sleep={sleep}", "--json")  # fmt: skip


def grid_driver(
    server: Server, admin: psycopg.Connection, sleep: float, grid: dict, **popen
) -> tuple[subprocess.Popen, int]:
    """A parallel grid of fault_slow (pgtrade/backtest_parallel.py) driven by a Python process of its own; returns
    the process and the grid's parent run once the driving session holds it."""
    script = (
        "import sys\nfrom pgtrade.backtest_parallel import grid\n"
        "grid(sys.argv[1], strategy='fault_slow', symbols=['FLTBT'], interval='1d', start='2010-01-01',"
        f" end='2014-01-01', params={{'sleep': {sleep}}}, grid={grid!r}, jobs=2)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", script, server.url], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)  # fmt: skip
    server.procs.append(driver)
    parent = eventually(
        lambda: admin.execute(
            "SELECT id FROM backtest.runs WHERE purpose = 'grid' AND backend_pid IS NOT NULL"
        ).fetchone(),
        timeout=30,
        what="the grid's parent to be held",
    )[0]
    return driver, parent


def begun_run(admin: psycopg.Connection) -> tuple[int, int]:
    """The id of the CLI's running run (committed by backtest.run_begin) and the pid of the backend sleeping in it."""
    run_id, pid = eventually(
        lambda: admin.execute(
            "SELECT r.id, r.backend_pid FROM backtest.runs r JOIN pg_stat_activity a ON a.pid = r.backend_pid "
            "WHERE r.status = 'running' AND a.wait_event = 'PgSleep' ORDER BY r.id DESC LIMIT 1"
        ).fetchone(),
        timeout=30,
        what="the CLI's run to be running, its backend in the strategy",
    )
    return run_id, pid


def assert_marked_failed(admin: psycopg.Connection, run_id: int) -> None:
    row = run_row(admin, run_id)
    assert row["status"] == "failed" and row["error"] == INTERRUPTED, row
    assert row["account_id"] is None and row["decisions"] == 0  # nothing of the run's work is left
    name = f"backtest run {run_id}"
    assert admin.execute("SELECT count(*) FROM trading.accounts WHERE name = %s", (name,)).fetchone()[0] == 0


def test_killed_backtests_are_marked_failed_never_half_written(capfd):
    with own_server("backtest") as server:
        slow_world(server)
        with server.connect() as conn:
            with pytest.raises(psycopg.Error) as exc:
                conn.execute("SELECT backtest.run_hold(-1)")
            assert exc.value.sqlstate == "BT070"
        with server.connect(autocommit=True) as admin:
            # an uninterrupted CLI run: done, in the row it began with
            ok = backtest_cli(server, 0)
            out, err = ok.communicate(timeout=120)
            assert ok.returncode == 0, err
            done = json.loads(out)["run"]
            assert done["status"] == "done" and done["backend_pid"] is not None
            assert admin.execute("SELECT count(*) FROM backtest.runs").fetchone()[0] == 1
            # a refused request leaves nothing (as before run_begin)
            bad = cli(server, "backtest", "run", "--strategy", "fault_slow", "--symbols", "FLTBT", "--start",
                      "2010-01-01", "--end", "2014-01-01", "--mode", "fast", "--param", "nope=1")  # fmt: skip
            assert bad.wait(timeout=60) == 1 and "BT004" in bad.stderr.read()
            assert admin.execute("SELECT count(*) FROM backtest.runs").fetchone()[0] == 1

            # 1. pg_terminate_backend: the CLI fails, its run stays running until the recovery marks it failed
            proc = backtest_cli(server, 60)
            run_id, pid = begun_run(admin)
            assert admin.execute("SELECT backtest.fail_interrupted_runs()").fetchone()[0] == 0  # alive: untouched
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
            assert proc.wait(timeout=30) == 1
            eventually(lambda: not _alive(pid), timeout=10, what="the backend to exit")
            assert run_row(admin, run_id)["status"] == "running"
            assert admin.execute("SELECT backtest.fail_interrupted_runs()").fetchone()[0] == 1
            assert_marked_failed(admin, run_id)

            # 2. a grid driven from Python (pgtrade/backtest_parallel.py) whose process is killed: the parent is
            # held by its driving session, so it is marked failed; its finished points stay done
            driver, parent = grid_driver(server, admin, 30, {"fast": [5, 10], "slow": [20, 50]})
            eventually(lambda: sleeping_backends(admin), timeout=30, what="a grid point to be running")
            driver.kill()
            driver.wait(timeout=30)
            eventually(
                lambda: admin.execute("SELECT backtest.fail_interrupted_runs()").fetchone()[0] == 1,
                timeout=20,
                what="the grid's parent to be marked failed",
            )
            assert_marked_failed(admin, parent)
            # the points that were in flight never commit (their client is gone); none is left running
            assert (
                admin.execute(
                    "SELECT count(*) FROM backtest.runs WHERE parent_id = %s AND status <> 'done'", (parent,)
                ).fetchone()[0]
                == 0
            )

            # 3. SIGKILL of the run's backend: the postmaster ends every backend and recovers (no restart by us)
            proc = backtest_cli(server, 60)
            run_id, pid = begun_run(admin)
        offset = server.log_size()
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        eventually(lambda: replayed_count(server.url) >= 0, timeout=60, interval=0.1, what="the server to be back")
        back_s = round(time.monotonic() - t0, 3)
        text = server.log_since(offset)
        assert "terminated by signal 9" in text and "all server processes terminated; reinitializing" in text
        with server.connect(autocommit=True) as admin:
            assert admin.execute("SELECT backtest.fail_interrupted_runs()").fetchone()[0] == 1
            assert_marked_failed(admin, run_id)

            # 4. the API (api.run_backtest): one PostgREST transaction; a killed request leaves nothing
            with server.connect() as conn:
                account(conn, "fault-api", kind="live", clock=None)
                conn.commit()
            runs_before = admin.execute("SELECT count(*) FROM backtest.runs").fetchone()[0]
            accounts_before = admin.execute("SELECT count(*) FROM trading.accounts").fetchone()[0]
            web = server.connect()
            web_pid = web.info.backend_pid
            answer: dict = {}

            def call():
                try:
                    answer["r"] = request(
                        web, "trader",
                        "SELECT * FROM api.run_backtest('fault_slow', ARRAY['FLTBT'], '1d', '2010-01-01', "
                        "'2014-01-01', '{\"sleep\": 3}'::jsonb)",
                        account_claim="fault-api",
                    )  # fmt: skip
                except psycopg.OperationalError as exc:
                    answer["error"] = exc

            th = threading.Thread(target=call, daemon=True)
            th.start()
            eventually(
                lambda: web_pid in sleeping_backends(admin) or answer,
                timeout=10,
                what="the API request to be running",
            )
            assert not answer, answer  # still running
            assert admin.execute("SELECT pg_terminate_backend(%s)", (web_pid,)).fetchone()[0]
            th.join(timeout=30)
            assert "error" in answer or answer["r"].status >= 500, answer
            assert admin.execute("SELECT count(*) FROM backtest.runs").fetchone()[0] == runs_before
            assert admin.execute("SELECT count(*) FROM trading.accounts").fetchone()[0] == accounts_before
            assert admin.execute("SELECT count(*) FROM backtest.runs WHERE status = 'running'").fetchone()[0] == 0
        with capfd.disabled():
            report(
                "backend SIGKILL during a backtest",
                kill_to_accepting_connections_s=back_s,
                reinitialize_to_ready_log_s=_log_span(
                    text,
                    "all server processes terminated; reinitializing",
                    "database system is ready to accept connections",
                ),  # fmt: skip
                redo_s=_redo(text),
            )


# ------------------------------------------------------------------------------------------------ 3. pg_cron
SLOW_JOB = (
    "SELECT trading.snapshot_live_portfolios(), pg_sleep(coalesce((SELECT seconds FROM public.fault_job_sleep), 0))"
)


def test_postmaster_killed_during_a_pg_cron_job_and_backtests(capfd):
    with own_server("cron") as server:
        slow_world(server)
        with server.connect(autocommit=True) as admin:
            # this server's snapshots are the slow job's alone
            admin.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'pgtrade-trading-snapshots'")
            live = account(admin, "fault-cron-live", kind="live", clock=None)
            admin.execute("CREATE TABLE public.fault_job_sleep (seconds float)")
            admin.execute("INSERT INTO public.fault_job_sleep VALUES (120)")
            # a pgtrade job's shape (the live snapshots), made long: it writes, then sleeps until killed
            admin.execute("SELECT cron.schedule('fault-slow-snapshots', '* * * * *', %s)", (SLOW_JOB,))
            job = admin.execute("SELECT jobid FROM cron.job WHERE jobname = 'fault-slow-snapshots'").fetchone()[0]
            admin.execute("SELECT pg_reload_conf()")  # pg_cron reloads its job list (pgtrade/pg_cron.py)
            # a CLI backtest and a parallel grid running when the server dies
            proc = backtest_cli(server, 300)
            run_id, _ = begun_run(admin)
            driver, parent = grid_driver(server, admin, 300, {"fast": [5, 10], "slow": [20]}, stderr=subprocess.DEVNULL)
            # the job's run in progress (it starts at the next minute)
            runid, started = eventually(
                lambda: admin.execute(
                    "SELECT d.runid, d.start_time FROM cron.job_run_details d JOIN pg_stat_activity a "
                    "ON a.pid = d.job_pid WHERE d.jobid = %s AND d.status = 'running' AND a.wait_event = 'PgSleep'",
                    (job,),
                ).fetchone(),
                timeout=75,
                what="the slow job to be running",
            )
            wrote = admin.execute("SELECT count(*) FROM trading.portfolio_snapshots").fetchone()[0]
        killed_at, exit_s = crash(server)
        proc.wait(timeout=30)
        driver.wait(timeout=60)
        rec = restart(server)
        with server.connect(autocommit=True) as admin:
            admin.execute("UPDATE public.fault_job_sleep SET seconds = 0")
            status, message = admin.execute(
                "SELECT status, return_message FROM cron.job_run_details WHERE runid = %s", (runid,)
            ).fetchone()
            assert status == "failed", (status, message)
            # nothing of the killed run's transaction: no snapshot taken at its time
            after = admin.execute("SELECT count(*) FROM trading.portfolio_snapshots WHERE ts >= %s", (started,))
            assert after.fetchone()[0] == 0
            assert admin.execute("SELECT count(*) FROM trading.portfolio_snapshots").fetchone()[0] == wrote
            # the job runs again on its schedule, and succeeds; so does the watcher, which marks the runs failed
            again = eventually(
                lambda: admin.execute(
                    "SELECT runid, status, start_time FROM cron.job_run_details WHERE jobid = %s AND runid > %s "
                    "AND status IN ('succeeded', 'failed')",
                    (job, runid),
                ).fetchone(),
                timeout=90,
                what="the job's next run",
            )
            assert again[1] == "succeeded", again
            # it wrote a snapshot: one taken since the killed run began (that run left none, asserted above); not
            # "since the next run's start_time", which pg_cron's launcher records after the worker has started (a
            # quick run's now() can precede it)
            assert (
                admin.execute(
                    "SELECT count(*) FROM trading.portfolio_snapshots WHERE account_id = %s AND ts >= %s",
                    (live, started),
                ).fetchone()[0]
                >= 1
            )
            recovered = eventually(
                lambda: admin.execute(
                    "SELECT d.start_time FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                    "WHERE j.jobname = 'pgtrade-ops-watch' AND d.status = 'succeeded' AND d.start_time > %s "
                    "ORDER BY d.runid LIMIT 1",
                    (started,),
                ).fetchone(),
                timeout=60,
                what="the watcher job (backtest recovery) to run",
            )
            assert_marked_failed(admin, run_id)
            assert_marked_failed(admin, parent)
            assert admin.execute("SELECT count(*) FROM backtest.runs WHERE status = 'running'").fetchone()[0] == 0
        with capfd.disabled():
            report(
                "postmaster SIGKILL during a pg_cron job and backtests",
                killed_job_run=f"{status}: {message}",
                next_run_started=again[2].isoformat(),
                recovery_job_ran=recovered[0].isoformat(),
                old_processes_exit_s=round(exit_s, 3),
                pg_ctl_start_s=rec.restart_s,
                redo_s=rec.redo_s,
                recovery_log_span_s=rec.log_span_s,
            )
