"""The live feed against the real test database: forming-bar upserts, replay re-stamping, polling sources, and a
stream that loses its database connection mid-run without losing or duplicating a bar."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from loaders.stream import StreamConfig, build, sim_start
from loaders.synthetic import SyntheticMarket, calibrate_from
from pgtrade.cli import main
from pgtrade.errors import PgtradeError
from pgtrade.ingest import Bar


def eventually(cond, timeout=20.0, interval=0.02, what="condition"):
    """Poll ``cond`` until true (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def expected_final(market: SyntheticMarket, n: int) -> dict:
    """The last value of each bar among the first ``n`` updates of a (fresh, same-seed) market."""
    out = {}
    for i, tick in enumerate(market.ticks()):
        if i == n:
            break
        b = tick.bar
        out[(b.symbol, b.ts)] = (
            Decimal(repr(b.open)),
            Decimal(repr(b.high)),
            Decimal(repr(b.low)),
            Decimal(repr(b.close)),
            Decimal(b.volume),
        )
    return out


def stored(url, symbols):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT symbol, ts, open, high, low, close, volume FROM market.bars "
            "WHERE symbol = ANY(%s) AND interval = '1m'",
            (symbols,),
        ).fetchall()
    return rows


def test_synthetic_stream_upserts_forming_bars_for_ten_symbols(db_url, unique_symbol):
    symbols = tuple(f"{unique_symbol}{i}" for i in range(10))
    cfg = StreamConfig(source="synthetic", symbols=symbols, speed=1200, max_bars=600, seed=7, updates_per_minute=6)
    stream = build(cfg, url=db_url)
    stats = stream.run()
    assert stats.stopped_by == "max-bars" and stats.updates == 600
    fresh = SyntheticMarket(symbols, stream.calibration, start=stream.start, seed=7, updates_per_minute=6)
    want = expected_final(fresh, 600)
    rows = stored(db_url, list(symbols))
    assert len(rows) == len(want) == 100  # 600 updates = 10 symbols x 10 minutes x 6 updates
    assert {(r[0], r[1]): tuple(r[2:]) for r in rows} == want
    # each bar inserted exactly once; every update is accounted for, however the updates fell into batches (a
    # later update of the same bar in one batch is coalesced, else it is an update or finds the bar unchanged)
    assert stats.inserted == 100
    assert stats.inserted + stats.updated + stats.unchanged + stats.coalesced == stats.updates == 600
    assert stats.rejected == 0 and len(stats.latencies_ns) == 600
    assert max(r[1] for r in rows) <= datetime.now(UTC)  # accelerated runs end at the present
    summary = stats.summary()
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]


def test_calibration_comes_from_the_real_spx_series(db_url):
    cal = calibrate_from(None, "SPX")  # the bundled file (the test DB need not hold SPX)
    assert "SPX_1d.csv.gz" in cal.source and cal.returns == 5030
    # S&P 500 1999-2018: ~1.2% daily volatility -> ~0.06% a minute; some jump days; positive jump spread
    assert 0.0003 < cal.vol < 0.001 and 0 < cal.jump_rate < 0.05 / 390 and cal.jump_std > 0


def test_stream_survives_its_connection_being_killed(db_url, unique_symbol):
    symbols = tuple(f"{unique_symbol}K{i}" for i in range(10))
    cfg = StreamConfig(source="synthetic", symbols=symbols, speed=600, max_bars=3000, seed=11)
    stream = build(cfg, url=db_url)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(stats=stream.run()), daemon=True)
    thread.start()
    # kill the connection once bars are committed and the run is not over (how many batches that takes depends on
    # scheduling, so nothing here counts batches)
    eventually(lambda: stream.stats.inserted > 0, what="the stream to commit some bars")
    assert thread.is_alive()
    victim = stream.backend_pid
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (victim,)).fetchone()[0]
    eventually(lambda: stream.backend_pid != victim, what="a reconnect")
    thread.join(timeout=60)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1 and stats.db_errors >= 1 and stats.stopped_by == "max-bars"
    fresh = SyntheticMarket(symbols, stream.calibration, start=stream.start, seed=11)
    want = expected_final(fresh, 3000)
    rows = stored(db_url, list(symbols))
    assert len(rows) == len(want)  # nothing lost; the primary key rules out duplicates
    assert {(r[0], r[1]): tuple(r[2:]) for r in rows} == want  # every bar holds its final values


def _store_daily_history(db_url: str, symbol: str, *, days: int) -> None:
    """Daily bars of a new instrument from 2020-01-06, closes 10.5, 11.5, ... (committed: the replay reads them)."""
    from pgtrade.ingest import ingest

    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT market.upsert_instrument(%s::text, 'replay test'::text)", (symbol,))
        ingest(
            conn,
            [
                Bar(symbol, "1d", datetime(2020, 1, 6 + i, tzinfo=UTC), 10 + i, 11 + i, 9 + i, 10.5 + i, 100 * (i + 1))
                for i in range(days)
            ],
            source="test:replay",
        )
        conn.commit()


def test_replay_restamps_stored_history_to_consecutive_minutes(db_url, unique_symbol):
    _store_daily_history(db_url, unique_symbol, days=3)
    stream = build(StreamConfig(source="replay", symbols=(unique_symbol,), speed=600, max_bars=3), url=db_url)
    stats = stream.run()
    assert stats.updates == 3 and stats.inserted == 3 and stream.source_name == f"replay:{unique_symbol}:1d"
    rows = sorted(stored(db_url, [unique_symbol]))
    assert [r[1] for r in rows] == [stream.start + timedelta(minutes=i) for i in range(3)]
    assert [r[5] for r in rows] == [Decimal("10.5"), Decimal("11.5"), Decimal("12.5")]


def test_replay_resumes_after_the_bars_earlier_replays_sent(db_url, unique_symbol):
    _store_daily_history(db_url, unique_symbol, days=5)
    # placed to end 10 minutes ago: room for the resumed run
    first = build(
        StreamConfig(source="replay", symbols=(unique_symbol,), speed=600, max_bars=2, ends_ago=10), url=db_url
    )
    assert first.run().inserted == 2
    assert [r[5] for r in sorted(stored(db_url, [unique_symbol]))] == [Decimal("10.5"), Decimal("11.5")]
    # the second run replays the daily history again (never the replayed 1m bars), from the third day on, stamped
    # from the minute after the first run's last bar: no gap, no overlap
    second = build(
        StreamConfig(source="replay", symbols=(unique_symbol,), speed=600, max_bars=2, resume=True), url=db_url
    )
    assert second.start == first.start + timedelta(minutes=2)
    assert second.source_name == f"replay:{unique_symbol}:1d"
    assert second.run().inserted == 2
    rows = sorted(stored(db_url, [unique_symbol]), key=lambda r: r[1])
    assert [r[1] for r in rows] == [first.start + timedelta(minutes=i) for i in range(4)]
    assert [r[5] for r in rows] == [Decimal("10.5"), Decimal("11.5"), Decimal("12.5"), Decimal("13.5")]


def test_resumed_replay_faster_than_real_time_stops_at_the_present(db_url, unique_symbol):
    _store_daily_history(db_url, unique_symbol, days=20)
    first = build(
        StreamConfig(source="replay", symbols=(unique_symbol,), speed=600, max_bars=2, ends_ago=3), url=db_url
    )
    first.run()
    # 18 bars are left, but only the minutes up to the last closed one may be stamped: the run is cut there
    second = build(
        StreamConfig(source="replay", symbols=(unique_symbol,), speed=6000, max_bars=18, resume=True), url=db_url
    )
    stats = second.run()
    assert stats.rejected == 0 and stats.stopped_by == "source exhausted" and 2 <= stats.inserted < 18
    rows = sorted(stored(db_url, [unique_symbol]), key=lambda r: r[1])
    assert [r[1] for r in rows] == [first.start + timedelta(minutes=i) for i in range(len(rows))]
    assert rows[-1][1] + timedelta(minutes=1) <= datetime.now(UTC)


def test_polling_source_with_injected_fetch(db_url, unique_symbol):
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    polls = []

    def fetch(symbols, start, end, interval):  # alpaca-shaped: a BarSet
        import json as _json

        from alpaca.data.models import BarSet

        polls.append(start)
        close = 100 + len(polls)
        raw = {
            unique_symbol: [
                {
                    "t": (minute - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
                    "o": 100,
                    "h": 110,
                    "l": 99,
                    "c": 101,
                    "v": 5,
                    "n": 3,
                    "vw": 100.5,
                },
                {
                    "t": minute.isoformat().replace("+00:00", "Z"),
                    "o": 100,
                    "h": 120,
                    "l": 99,
                    "c": close,
                    "v": 10 * len(polls),
                    "n": 4,
                    "vw": 101.0,
                },
            ]
        }
        return BarSet(_json.loads(_json.dumps(raw)))

    cfg = StreamConfig(source="alpaca", symbols=(unique_symbol,), poll_seconds=0.05, max_bars=6)
    stats = build(cfg, url=db_url, fetch=fetch).run()
    assert len(polls) == 3 and stats.updates == 6
    # two distinct bars, each inserted once; the other updates land as corrections, unchanged re-sends or (when two
    # polls fall into one batch) coalesced, depending on scheduling: only their total must hold
    assert stats.inserted == 2 and stats.rejected == 0
    assert stats.inserted + stats.updated + stats.unchanged + stats.coalesced == 6
    rows = {r[1]: r for r in stored(db_url, [unique_symbol])}
    assert rows[minute][5] == Decimal(103) and rows[minute][6] == Decimal(30)


def test_speed_above_one_needs_a_bound():
    cfg = StreamConfig(source="synthetic", symbols=("X",), speed=10)
    with pytest.raises(PgtradeError, match="needs --duration or --max-bars"):
        sim_start(cfg, datetime.now(UTC), 6)


def test_cli_stream_json_summary_and_stop(db_url, unique_symbol, monkeypatch):
    monkeypatch.setenv("PGTRADE_DATABASE_URL", db_url)
    result = CliRunner().invoke(
        main,
        [
            "stream",
            "--source",
            "synthetic",
            "--symbols",
            f"{unique_symbol}A,{unique_symbol}B",
            "--speed",
            "600",
            "--duration",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["stopped_by"] == "duration" and summary["updates"] > 0
    assert summary["latency_ms"]["count"] == summary["updates"]
    bad = CliRunner().invoke(main, ["stream", "--source", "synthetic", "--symbols", "X", "--speed", "5"])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error: --speed above 1 needs")


def test_stop_from_another_thread_ends_the_run(db_url, unique_symbol):
    stream = build(StreamConfig(source="synthetic", symbols=(unique_symbol,)), url=db_url)  # live, unbounded
    threading.Timer(0.5, stream.stop).start()
    stats = stream.run()
    assert stats.stopped_by == "stop"
