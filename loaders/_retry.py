"""Retry with exponential backoff and jitter, bounded in attempts and in total time, for the market-data feeds.

``retry_call(fn, what=...)`` calls ``fn`` until it succeeds, an error is classified as permanent, or the budget is
spent. Errors are classified by ``classify``:

- *retry*: HTTP 429 (waiting at least its ``Retry-After``), HTTP 5xx/408, timeouts and dropped connections, yfinance's
  rate-limit error, and transient database errors (``psycopg.OperationalError``: the connection was lost);
- *unreachable*: the host name does not resolve or the connection is refused. No network is a state, not a blip, so
  this fails at once with one line (``NetworkUnreachable``) instead of burning the retry budget;
- *fatal*: anything else (a 401/403/404/422, a bad request): re-raised as one ``PgtradeError`` line.

Messages name the service and the HTTP status, never a credential: every text that leaves this module passes
through ``scrub`` with the secrets the caller names.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import psycopg

from pgtrade.errors import PgtradeError

log = logging.getLogger("pgtrade.feeds")
T = TypeVar("T")

RETRY, UNREACHABLE, FATAL = "retry", "unreachable", "fatal"


class NetworkUnreachable(PgtradeError):
    """The service's host cannot be reached at all (DNS failure, connection refused)."""


class RetriesExhausted(PgtradeError):
    """Every allowed attempt failed with a transient error."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` calls and ``total`` seconds (waits included).

    The n-th wait is ``min(cap, base * 2**(n-1))`` scaled by a random factor in [1 - jitter, 1]
    ("equal jitter": it grows, yet callers that failed together do not retry together).
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    total: float = 120.0
    jitter: float = 0.5

    def backoff(self, n: int, rng: Callable[[], float] = random.random) -> float:
        raw = min(self.cap, self.base * (2 ** (n - 1)))
        return raw * (1.0 - self.jitter * rng())


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # RETRY, UNREACHABLE or FATAL
    reason: str  # one line, no secrets
    retry_after: float | None = None


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` on one line with every secret replaced by ``***``."""
    out = " ".join(str(text).split())
    for s in secrets:
        if s:
            out = out.replace(s, "***")
    return out[:300]


def parse_retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent/garbled."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _http_status(exc: BaseException) -> tuple[int | None, dict]:
    """(status, headers) of an HTTP error from requests, curl_cffi or alpaca-py's APIError, else (None, {})."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "status_code", None)
    headers = getattr(response, "headers", None) or {}
    return (int(status) if isinstance(status, int) and status >= 100 else None), headers


_UNREACHABLE_WORDS = (
    "could not resolve host",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "name resolution",
    "connection refused",
    "failed to resolve",
    "no address associated",
    "network is unreachable",
    "couldn't connect to server",
    "failed to connect",
)


def classify(exc: BaseException) -> Verdict:
    """Decide whether ``exc`` is worth another attempt (see the module docstring)."""
    chain = _chain(exc)
    for e in chain:
        status, headers = _http_status(e)
        if status is not None:
            if status == 429:
                return Verdict(RETRY, "HTTP 429 Too Many Requests", parse_retry_after(headers.get("Retry-After")))
            if status >= 500 or status == 408:
                return Verdict(RETRY, f"HTTP {status}", parse_retry_after(headers.get("Retry-After")))
            return Verdict(FATAL, f"HTTP {status}")
    for e in chain:
        if isinstance(e, psycopg.OperationalError):  # the database: always worth a reconnect
            return Verdict(RETRY, f"database connection: {_first_line(e)}")
    for e in chain:
        name = type(e).__name__
        text = str(e).lower()
        if name == "YFRateLimitError":
            return Verdict(RETRY, "rate limited (HTTP 429 Too Many Requests)")
        if (
            isinstance(e, (socket.gaierror, ConnectionRefusedError))
            or name in ("DNSError", "NameResolutionError")
            or any(w in text for w in _UNREACHABLE_WORDS)
        ):
            return Verdict(UNREACHABLE, _unreachable_reason(str(e)))
    for e in chain:
        if (
            isinstance(e, (TimeoutError, ConnectionError))
            or "timeout" in type(e).__name__.lower()
            or type(e).__name__ in ("ConnectionError", "ChunkedEncodingError", "ProxyError")
        ):
            return Verdict(RETRY, _first_line(e))
    return Verdict(FATAL, _first_line(exc))


_HOST = re.compile(r"host(?:=| |: )'?([A-Za-z0-9.\-]+)")


def _unreachable_reason(text: str) -> str:
    low = text.lower()
    kind = (
        "connection refused"
        if "refused" in low
        else "cannot resolve host"
        if any(w in low for w in ("resolve", "name or service", "name resolution", "nodename", "no address"))
        else "cannot connect"
    )
    m = _HOST.search(text)
    return f"{kind} {m.group(1)}" if m else kind


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def retry_call(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy = RetryPolicy(),
    classify: Callable[[BaseException], Verdict] = classify,
    secrets: Iterable[str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, Verdict, float], None] | None = None,
) -> T:
    """``fn()``, retried on transient errors; raises one-line ``PgtradeError``s naming ``what`` otherwise.

    ``on_retry(attempt, verdict, wait)`` runs before each wait (the stream counts retries with it).
    """
    secrets = tuple(secrets)
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except PgtradeError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one line
            verdict = classify(exc)
            reason = scrub(verdict.reason, secrets)
            if verdict.kind == UNREACHABLE:
                raise NetworkUnreachable(
                    f"{what}: network unreachable ({reason}); check the connection or proxy settings"
                ) from None
            if verdict.kind == FATAL:
                raise PgtradeError(f"{what}: {reason}") from None
            elapsed = clock() - start
            wait = policy.backoff(attempt, rng)
            if verdict.retry_after is not None:
                wait = max(wait, verdict.retry_after)
            if attempt >= policy.attempts or elapsed + wait > policy.total:
                raise RetriesExhausted(
                    f"{what}: gave up after {attempt} attempt{'s' if attempt > 1 else ''} in "
                    f"{elapsed:.1f}s; last error: {reason}"
                ) from None
            log.warning("%s: attempt %d failed (%s); retrying in %.2fs", what, attempt, reason, wait)
            if on_retry:
                on_retry(attempt, verdict, wait)
            sleep(wait)
