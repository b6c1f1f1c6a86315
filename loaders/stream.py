"""A live market-data feed into the database, through the one ingest path (``pgtrade stream``).

Sources:

- ``synthetic``: ``loaders.synthetic.SyntheticMarket`` (seeded random walk calibrated to a real series), several
  forming-bar updates per symbol per minute; symbols not yet known are registered (24/7 session, as ``crypto``:
  the walk never closes).
- ``replay``: each symbol's stored history (market.bars, the finest interval stored; else the bundled file) is
  replayed one bar per minute. **Re-stamping**: the i-th stored bar becomes the 1m bar at ``start + i`` minutes
  and is sent when that minute closes; prices and volume are the stored ones, the original ts is dropped. So the
  live pipeline sees fresh, aligned 1m bars (source ``replay:<SYMBOL>:<interval>``).
- ``yfinance`` / ``alpaca``: polling every ``poll_seconds`` for the last few bars (the forming bar is corrected
  by the next poll through the upsert).

Time: simulated time runs ``speed`` times faster than the wall clock. At speed 1 the first minute is the current
one, so bars are live. Above 1 the run must be bounded (``duration`` or ``max_bars``), and it is placed so that it
ends at the present: bars never lie in the future (which the database would reject).

The feed's clock: at a speed other than 1, a simulated source (replay, synthetic) sets ``pgtrade.feed_now`` in each
ingest transaction to its simulated time (the offset of the newest update in the batch after the first minute's
start). The database takes that as now for the closed-bar rule (``ml.closed_upto``: a forming bar stamped in the
simulated past is closed only once the simulated clock passes its end, so it is scored once, not on its first
update) and for wall-clock accounts (``trading.account_clock``: orders its closed bars cause are accepted at the
simulated time, so the feed's next bar can fill them). At speed 1 the bars are live and now() is the clock.

Latency of an update = wall time from its arrival in Python (its scheduled time for synthetic/replay -- so time
spent queued behind a slow commit counts -- or the end of the poll for the API sources) to the commit of the
transaction that stored it. Updates of the same bar that pile up while a commit is in flight are coalesced (the
last one wins, as in the upsert) and each is counted with the commit that stored its final value.

Resilience: a batch that fails with a transient database error (connection dropped) is resent on a new
connection, with backoff; the upsert makes a resend of an already-committed batch change nothing, so no bar is lost
or stored twice (so a feed rides out a server restart that is over within its retry budget). A replay killed
outright and started again with ``--resume`` continues each symbol at the minute after its last stored bar with the
next bar of its history (``replay_ticks``). Transient API errors are retried by ``_retry``; a poll that still fails is
counted and skipped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta

import psycopg

from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar, Unparsed, ingest_batch
from pgtrade.intervals import interval_step

from ._retry import NetworkUnreachable, RetryPolicy, retry_call
from .synthetic import Calibration, SyntheticMarket, Tick, calibrate_from

SOURCES = ("replay", "synthetic", "yfinance", "alpaca")


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    source: str
    symbols: tuple[str, ...]
    interval: str = "1m"
    speed: float = 1.0
    duration: float | None = None
    max_bars: int | None = None
    seed: int | None = 0
    updates_per_minute: int = 6
    poll_seconds: float = 30.0
    calibrate_on: str = "SPX"
    resume: bool = False
    ends_ago: float = 0.0
    max_batch: int = 5000
    db_policy: RetryPolicy = RetryPolicy(attempts=10, base=0.1, cap=5.0, total=120.0)
    api_policy: RetryPolicy = RetryPolicy(attempts=4, base=1.0, cap=20.0, total=60.0)


@dataclass
class StreamStats:
    updates: int = 0
    coalesced: int = 0
    batches: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    reconnects: int = 0
    db_errors: int = 0
    api_errors: int = 0
    elapsed_s: float = 0.0
    stopped_by: str = ""
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    bars: set = field(default_factory=set, repr=False)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ns)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, max(0, math.ceil(p / 100 * len(lat)) - 1))] / 1e6, 3)

        out = {k: v for k, v in asdict(self).items() if k not in ("latencies_ns", "bars")}
        out["distinct_bars"] = len(self.bars)
        out["updates_per_s"] = round(self.updates / self.elapsed_s, 1) if self.elapsed_s else None
        out["latency_ms"] = {"p50": pct(50), "p99": pct(99), "max": pct(100), "count": len(lat)}
        return out


def _floor_minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def sim_start(config: StreamConfig, now: datetime, ticks_per_minute: int) -> datetime:
    """The first (aligned) minute of a run: the current one at speed 1, else so that the run ends by ``now``
    (``ends_ago`` minutes before it: room for a later run, e.g. a replay resumed, to fill up to the present)."""
    if config.speed == 1:
        if config.ends_ago:
            raise PgtradeError("--ends-ago places a run faster than real time; at --speed 1 bars are live")
        return _floor_minute(now)
    if config.ends_ago < 0:
        raise PgtradeError("--ends-ago must be zero or more minutes")
    spans = []
    if config.duration is not None:
        spans.append(config.duration * config.speed)
    if config.max_bars is not None:
        spans.append(math.ceil(config.max_bars / max(1, ticks_per_minute)) * 60)
    if not spans:
        raise PgtradeError("--speed above 1 needs --duration or --max-bars (simulated time must end by now)")
    return _floor_minute(now - timedelta(seconds=min(spans) + 60, minutes=config.ends_ago))


class Stream:
    """Run a feed: ``Stream(config, url=...).run()``; ``stop()`` (any thread) or Ctrl-C ends it with its stats."""

    def __init__(
        self,
        config: StreamConfig,
        *,
        url: str,
        ticks: Iterable[Tick] | None = None,
        source_name: str | None = None,
        lead: float = 0.0,
        auto_register: bool = False,
        asset_class: str = "stock",
        on_connect: Callable[[int], None] | None = None,
        sim_clock: datetime | None = None,
    ):
        self.config = config
        self.url = url
        self.ticks = ticks
        self.source_name = source_name or config.source
        self.lead = lead  # simulated seconds already past at t0 (speed 1: we start inside the current minute)
        self.auto_register = auto_register
        self.asset_class = asset_class
        self.on_connect = on_connect
        self.sim_clock = sim_clock  # set: the simulated time of tick offset 0, sent as pgtrade.feed_now
        self._sim_offset = 0.0  # offset of the newest update handed to _send
        self.stats = StreamStats()
        self.conn: psycopg.Connection | None = None
        self.backend_pid: int | None = None
        self._stop = threading.Event()
        self._connects = 0
        self.t0 = time.perf_counter()

    # ------------------------------------------------------------------ database
    def _connect(self) -> psycopg.Connection:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
        self.conn = psycopg.connect(self.url, connect_timeout=5, application_name="pgtrade-stream")
        self._connects += 1
        self.stats.reconnects = self._connects - 1
        self.backend_pid = self.conn.info.backend_pid
        if self.on_connect:
            self.on_connect(self.backend_pid)
        return self.conn

    def _send(self, items: list[tuple[int, Bar | Unparsed]]) -> None:
        latest: dict = {}
        for _, item in items:
            key = (item.symbol, item.interval, item.ts) if isinstance(item, Bar) else id(item)
            latest.pop(key, None)
            latest[key] = item
        batch = list(latest.values())

        feed_now = self.sim_clock + timedelta(seconds=self._sim_offset) if self.sim_clock is not None else None

        def attempt():
            conn = (
                self.conn
                if self.conn is not None and not self.conn.closed and not self.conn.broken
                else self._connect()
            )
            return ingest_batch(
                conn,
                batch,
                source=self.source_name,
                auto_register=self.auto_register,
                asset_class=self.asset_class,
                feed_now=feed_now,
            )

        def on_retry(_n, _verdict, _wait):
            self.stats.db_errors += 1

        report = retry_call(attempt, what="stream: database", policy=self.config.db_policy, on_retry=on_retry)
        done = time.perf_counter_ns()
        t = report.total
        st = self.stats
        st.batches += 1
        st.coalesced += len(items) - len(batch)
        st.inserted, st.updated, st.unchanged, st.rejected = (
            st.inserted + t.inserted,
            st.updated + t.updated,
            st.unchanged + t.unchanged,
            st.rejected + t.rejected,
        )
        st.latencies_ns.extend(done - arrival for arrival, _ in items)
        st.bars.update(k for k in latest if isinstance(k, tuple))

    # ------------------------------------------------------------------ loop
    def stop(self) -> None:
        self._stop.set()

    def _due_ns(self, offset: float) -> int:
        return int((self.t0 + max(0.0, offset - self.lead) / self.config.speed) * 1e9)

    def run(self) -> StreamStats:
        cfg = self.config
        ticks: Iterator[Tick] = iter(self.ticks if self.ticks is not None else ())
        self.t0 = time.perf_counter()
        deadline = self.t0 + cfg.duration if cfg.duration is not None else None
        pending: list[tuple[int, Bar | Unparsed]] = []
        nxt = next(ticks, None)
        try:
            self._connect()
            while True:
                if self._stop.is_set():
                    self.stats.stopped_by = self.stats.stopped_by or "stop"
                    break
                now = time.perf_counter()
                if deadline is not None and now >= deadline:
                    self.stats.stopped_by = "duration"
                    break
                if cfg.max_bars is not None and self.stats.updates >= cfg.max_bars and not pending:
                    self.stats.stopped_by = "max-bars"
                    break
                if nxt is None and not pending:
                    self.stats.stopped_by = "source exhausted"
                    break
                now_ns = time.perf_counter_ns()
                while (
                    nxt is not None
                    and len(pending) < cfg.max_batch
                    and (cfg.max_bars is None or self.stats.updates < cfg.max_bars)
                    and self._due_ns(nxt.offset) <= now_ns
                ):
                    if nxt.bar is not None:
                        pending.append((self._due_ns(nxt.offset), nxt.bar))
                        self.stats.updates += 1
                        self._sim_offset = max(self._sim_offset, nxt.offset)
                    nxt = next(ticks, None)  # a wake-up tick lets a polling source fetch now
                if pending:
                    self._send(pending)
                    pending = []
                    continue
                if nxt is None or (cfg.max_bars is not None and self.stats.updates >= cfg.max_bars):
                    continue
                wait = self._due_ns(nxt.offset) / 1e9 - time.perf_counter()
                if deadline is not None:
                    wait = min(wait, deadline - time.perf_counter())
                if wait > 0:
                    self._stop.wait(wait)
        except KeyboardInterrupt:
            self.stats.stopped_by = "interrupted"
            if pending:  # best effort: what had arrived is still sent
                try:
                    self._send(pending)
                except Exception:  # noqa: BLE001 - stopping anyway; counts say what was stored
                    pass
        finally:
            self.stats.elapsed_s = round(time.perf_counter() - self.t0, 3)
            if self.conn is not None:
                self.conn.close()
        return self.stats


# ---------------------------------------------------------------------------------------------------- sources
def _register_synthetic(conn: psycopg.Connection, symbols: Iterable[str]) -> None:
    from .sample import register_instrument

    with conn.transaction():
        known = {
            r[0] for r in conn.execute("SELECT symbol FROM market.instruments WHERE symbol = ANY(%s)", (list(symbols),))
        }
        for sym in symbols:
            if sym not in known:
                register_instrument(
                    conn, symbol=sym, name="synthetic random walk (pgtrade stream)", asset_class="crypto"
                )


def replay_ticks(
    conn: psycopg.Connection,
    symbols: list[str],
    *,
    start: datetime,
    resume: bool = False,
    until: datetime | None = None,
) -> tuple[Iterator[Tick], str, datetime]:
    """Stored bars of each symbol, re-stamped to consecutive minutes from ``start`` (see the module docstring).

    The source is the symbol's finest stored series that is not itself a replay (a replay never replays replayed
    bars). ``resume``: continue each symbol exactly after the bars earlier replays stored: its history from the bar
    after them (it has as many replayed 1m bars as bars of its history were sent) and its time from the minute after
    the newest of them, so a feed stopped or killed at any point and started again with ``--resume`` stores every
    bar of the history once, at consecutive minutes: no gap, no duplicate. (An ingest batch is one transaction, so
    what a killed feed stored is a prefix of each symbol's history.) The run then starts at the earliest such minute
    (a symbol never replayed joins there), not at ``start``. ``until``: no bar stamped later is sent (a run faster
    than real time must end by the present). Returns the ticks, the source name and the run's first minute."""
    series: dict[str, list[tuple]] = {}
    firsts: dict[str, datetime] = {}
    used = []
    for sym in symbols:
        row = conn.execute(
            "SELECT interval FROM market.bars WHERE symbol = %s AND source NOT LIKE 'replay:%%' GROUP BY interval "
            "ORDER BY min((SELECT step FROM market.intervals WHERE code = interval)) LIMIT 1",
            (sym,),
        ).fetchone()
        skip = 0
        if resume:
            skip, last = conn.execute(
                "SELECT count(*), max(ts) FROM market.bars WHERE symbol = %s AND interval = '1m' "
                "AND source LIKE 'replay:%%'",
                (sym,),
            ).fetchone()
            if last is not None:
                firsts[sym] = last + timedelta(minutes=1)
        if row:
            bars = conn.execute(
                "SELECT open, high, low, close, volume FROM market.bars WHERE symbol = %s "
                "AND interval = %s ORDER BY ts",
                (sym, row[0]),
            ).fetchall()
            used.append(f"{sym}:{row[0]}")
        else:
            from .csv_loader import read_csv
            from .sample import DATA_DIR, manifest

            entry = next((s for s in manifest() if s.symbol == sym), None)
            if entry is None:
                raise PgtradeError(f"no stored history of {sym} to replay (load it first, e.g. pgtrade load sample)")
            bars = [
                (b.open, b.high, b.low, b.close, b.volume)
                for b in read_csv(DATA_DIR / entry.file, symbol=sym, interval=entry.interval)
                if isinstance(b, Bar)
            ]
            used.append(f"{sym}:{entry.interval}(bundled)")
        series[sym] = bars[skip:]
    if firsts:
        start = min(firsts.values())
    first = {sym: firsts.get(sym, start) for sym in symbols}

    def gen() -> Iterator[Tick]:
        minutes = max(len(b) + int((first[sym] - start).total_seconds() // 60) for sym, b in series.items())
        for i in range(minutes):
            ts = start + timedelta(minutes=i)
            if until is not None and ts > until:
                return
            for sym, bars in series.items():
                k = i - int((first[sym] - start).total_seconds() // 60)
                if 0 <= k < len(bars):
                    o, h, lo, c, v = bars[k]
                    yield Tick(
                        (i + 1) * 60.0, Bar(symbol=sym, interval="1m", ts=ts, open=o, high=h, low=lo, close=c, volume=v)
                    )

    return gen(), "replay:" + ",".join(used), start


def polling_ticks(
    fetch_recent: Callable[[], list[Bar | Unparsed]],
    *,
    poll_seconds: float,
    elapsed: Callable[[], float],
    stats: StreamStats,
) -> Iterator[Tick]:
    """Poll ``fetch_recent`` every ``poll_seconds`` (wall); bars arrive when the poll returns."""
    polls_ok = 0
    n = 0
    while True:
        try:
            items = fetch_recent()
            polls_ok += 1
        except NetworkUnreachable:
            if not polls_ok:
                raise
            stats.api_errors += 1
            items = []
        except PgtradeError:
            if not polls_ok and n == 0:
                raise
            stats.api_errors += 1
            items = []
        now = elapsed()
        for item in items:
            yield Tick(now, item)
        n += 1
        yield Tick(n * poll_seconds, None)  # wake up for the next poll


def build(config: StreamConfig, *, url: str, fetch=None, on_connect=None) -> Stream:
    """A ``Stream`` for ``config.source`` (``fetch`` replaces the API call of yfinance/alpaca, for tests)."""
    if config.source not in SOURCES:
        raise PgtradeError(f"unknown source {config.source!r}; use one of {', '.join(SOURCES)}")
    if config.speed <= 0:
        raise PgtradeError("--speed must be positive")
    symbols = [s.strip().upper() for s in config.symbols if s.strip()]
    if not symbols:
        raise PgtradeError("no symbols given (--symbols A,B,...)")
    now = datetime.now(UTC)
    try:
        setup = psycopg.connect(url, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise PgtradeError(f"stream: cannot connect to the database: {str(exc).strip().splitlines()[-1]}") from None
    with setup:
        step = interval_step(setup, config.interval).total_seconds()
        if config.source == "synthetic":
            if config.interval != "1m":
                raise PgtradeError("the synthetic feed makes 1m bars (the rollups give the longer intervals)")
            cal: Calibration = calibrate_from(setup, config.calibrate_on)
            start = sim_start(config, now, len(symbols) * config.updates_per_minute)
            _register_synthetic(setup, symbols)
            market = SyntheticMarket(
                symbols, cal, start=start, seed=config.seed, updates_per_minute=config.updates_per_minute
            )
            stream = Stream(
                config,
                url=url,
                ticks=market.ticks(),
                source_name="synthetic",
                lead=(now - start).total_seconds() if config.speed == 1 else 0.0,
                on_connect=on_connect,
                sim_clock=start if config.speed != 1 else None,
            )
            stream.calibration, stream.start = cal, start
            return stream
        if config.source == "replay":
            if config.interval != "1m":
                raise PgtradeError("replay re-stamps bars as 1m bars; use --interval 1m")
            start = sim_start(config, now, len(symbols))
            # faster than real time, the run ends by the present (--ends-ago before it): the last bar sent is the
            # last closed minute then (a resumed run starts where the previous one stopped, so it is cut here)
            until = None if config.speed == 1 else _floor_minute(now - timedelta(minutes=config.ends_ago + 1))
            ticks, name, start = replay_ticks(setup, symbols, start=start, resume=config.resume, until=until)
            stream = Stream(
                config,
                url=url,
                ticks=ticks,
                source_name=name[:200],
                lead=(now - start).total_seconds() if config.speed == 1 else 0.0,
                on_connect=on_connect,
                sim_clock=start if config.speed != 1 else None,
            )
            stream.start = start
            return stream
    # live polling sources: --speed does not apply (the wall clock is the market's)
    config = replace(config, speed=1.0)
    stream = Stream(config, url=url, source_name=config.source, auto_register=True, on_connect=on_connect)
    if config.source == "yfinance":
        from .yfinance_loader import fetch_bars as yf_bars
        from .yfinance_loader import fetch_history

        def recent():
            start = datetime.now(UTC) - timedelta(seconds=step * 5)
            return list(
                yf_bars(
                    symbols,
                    start=start,
                    end=None,
                    interval=config.interval,
                    fetch=fetch or fetch_history,
                    policy=config.api_policy,
                )
            )
    else:
        import os

        from .alpaca_loader import KEY_ENV, SECRET_ENV, client_fetch
        from .alpaca_loader import fetch_bars as alpaca_bars

        api = fetch or client_fetch()
        secrets = [v for v in (os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)) if v]

        def recent():
            start = datetime.now(UTC) - timedelta(seconds=step * 5)
            return alpaca_bars(
                symbols,
                start=start,
                end=None,
                interval=config.interval,
                fetch=api,
                policy=config.api_policy,
                secrets=secrets,
            )

    stream.ticks = polling_ticks(
        recent,
        poll_seconds=config.poll_seconds,
        elapsed=lambda: (time.perf_counter() - stream.t0) * config.speed,
        stats=stream.stats,
    )
    return stream
