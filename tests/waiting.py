"""Bounded waits for tests: poll a condition until it holds or a deadline passes, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(cond: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Call ``cond`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError
    naming ``what`` and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(interval)
