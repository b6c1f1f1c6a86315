"""pgtrade backtest: run, inspect, compare and report backtests (docs/backtesting.md)."""

from __future__ import annotations

from .cli import main


@main.group()
def backtest() -> None:
    """Backtests: the live trading procedures replayed on history (docs/backtesting.md)."""
