"""Run many backtests at once: a thread pool of database connections (issue 13, section 6).

The rules live in the database: a grid is ``backtest.grid_begin`` / ``backtest.grid_run`` per point /
``backtest.grid_finish``, a walk-forward ``backtest.walk_forward_begin`` / ``backtest.walk_forward_train`` per train
step / ``backtest.walk_forward_finish`` (db/procedures/backtest_grid.sql, backtest_walk_forward.sql). ``backtest.grid``
and ``backtest.walk_forward`` make the same calls one after another in one transaction; this module makes the
independent middle calls on ``jobs`` connections at once, each call in a transaction of its own that commits, so
every run is isolated on its own account and visible as soon as it is done. The connection that began the parent
run holds it (``backtest.run_hold``) until it is finished: if this process or the server dies half-way, the parent
is marked failed by ``backtest.fail_interrupted_runs`` (db/procedures/backtest_recovery.sql), never left running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True, kw_only=True)
class Batch:
    """A finished grid or walk-forward: its parent run id, the child calls' results and the wall time."""

    run_id: int
    results: list
    seconds: float
    jobs: int


def run_calls(
    url: str,
    query: str,
    args: Sequence[tuple],
    *,
    jobs: int,
    progress: Callable[[int], None] | None = None,
) -> list:
    """Execute ``query`` once per tuple of ``args`` on ``jobs`` connections; the first column of each, in order.

    Each call is its own transaction and commits. A call that raises stops the batch (calls already started finish)
    and the first error is raised.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    local = threading.local()
    conns: list[psycopg.Connection] = []
    lock = threading.Lock()

    def call(a: tuple):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = psycopg.connect(url)
            local.conn = conn
            with lock:
                conns.append(conn)
        try:
            value = conn.execute(query, a, prepare=False).fetchone()[0]
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        if progress:
            progress(1)
        return value

    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="backtest") as pool:
            futures = [pool.submit(call, a) for a in args]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        for c in conns:
            c.close()


def _failed(url: str, parent: int, exc: BaseException) -> None:
    """Mark a parent run failed when one of its calls raised (the sequential SQL form rolls back instead)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE backtest.runs SET status = 'failed', error = %s, finished_at = clock_timestamp() WHERE id = %s",
            (f"{type(exc).__name__}: {exc}".strip()[:2000], parent),
        )
        conn.commit()


def _steps(
    url: str,
    parent: int,
    t0: float,
    query: str,
    args: list[tuple],
    finish: str,
    *,
    jobs: int,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> Batch:
    """The independent middle calls of a begun grid or walk-forward on ``jobs`` connections, then its finish call;
    a call that raises marks the parent run failed and is raised."""
    if on_total:
        on_total(len(args))
    try:
        results = run_calls(url, query, args, jobs=jobs, progress=progress)
    except BaseException as exc:
        _failed(url, parent, exc)
        raise
    with psycopg.connect(url) as conn:
        conn.execute(finish, (parent,))
        conn.commit()
    return Batch(run_id=parent, results=results, seconds=time.perf_counter() - t0, jobs=jobs)


def grid(
    url: str,
    *,
    strategy: str,
    symbols: list[str],
    interval: str,
    start: str,
    end: str,
    params: dict,
    grid: dict | None,
    objective: str = "sharpe",
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Batch:
    """Run a parameter grid with its points in parallel; the parent run id and the child run ids in point order."""
    t0 = time.perf_counter()
    with psycopg.connect(url) as conn:
        parent = conn.execute(
            "SELECT (backtest.grid_begin(%s, %s, %s, %s, %s, %s, %s, %s)).id",
            (strategy, symbols, interval, start, end, Jsonb(params), None if grid is None else Jsonb(grid), objective),
        ).fetchone()[0]
        conn.execute("SELECT backtest.run_hold(%s)", (parent,))
        points = [
            r[0]
            for r in conn.execute(
                "SELECT p FROM backtest.runs r, backtest.grid_points(r.params -> 'grid') WITH ORDINALITY g(p, k)"
                " WHERE r.id = %s ORDER BY g.k",
                (parent,),
            )
        ]
        conn.commit()
        # this session holds the parent until it is finished (see _steps)
        return _steps(url, parent, t0, "SELECT (backtest.grid_run(%s, %s)).id", [(parent, Jsonb(p)) for p in points],
                      "SELECT backtest.grid_finish(%s)", jobs=jobs, progress=progress, on_total=on_total)  # fmt: skip


def walk_forward(
    url: str,
    *,
    strategy: str,
    symbols: list[str],
    interval: str,
    start: str,
    end: str,
    params: dict,
    train: str,
    test: str,
    purge: str = "0",
    anchored: bool = False,
    grid: dict | None = None,
    objective: str = "sharpe",
    ml: dict | None = None,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> Batch:
    """Run a walk-forward analysis with its train steps in parallel; the parent run id and the train steps' results."""
    t0 = time.perf_counter()
    with psycopg.connect(url) as conn:
        parent = conn.execute(
            "SELECT (backtest.walk_forward_begin(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)).id",
            (
                strategy,
                symbols,
                interval,
                start,
                end,
                Jsonb(params),
                train,
                test,
                purge,
                anchored,
                None if grid is None else Jsonb(grid),
                objective,
                None if ml is None else Jsonb(ml),
            ),
        ).fetchone()[0]
        conn.execute("SELECT backtest.run_hold(%s)", (parent,))
        tasks = conn.execute("SELECT n, params FROM backtest.walk_forward_tasks(%s)", (parent,)).fetchall()
        conn.commit()
        # this session holds the parent until it is finished (see _steps)
        return _steps(url, parent, t0, "SELECT backtest.walk_forward_train(%s, %s, %s)",
                      [(parent, n, Jsonb(p)) for n, p in tasks], "SELECT backtest.walk_forward_finish(%s)",
                      jobs=jobs, progress=progress, on_total=on_total)  # fmt: skip
