"""``pgtrade load yfinance|alpaca`` and ``pgtrade stream``: market-data feeds (registered on the CLI groups)."""

from __future__ import annotations
