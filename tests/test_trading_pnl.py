"""The P&L invariant under random order sequences (Hypothesis, against the real database): after every step
cash + market value == initial cash + realized + unrealized - commissions exactly, the fills ledger replays to
every stored position, and the cash ledger sums to cash."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trading_support import T0, account, advance, check_invariants, instrument, order

_counter = itertools.count()

prices = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("500"), places=3)
steps = st.lists(
    st.tuples(
        st.sampled_from(["TRDP1", "TRDP2"]),
        st.sampled_from(["buy", "sell"]),
        st.integers(min_value=1, max_value=40),
        st.sampled_from(["market", "market", "limit"]),
        prices,  # the next bar's close
        st.decimals(min_value=Decimal("-0.05"), max_value=Decimal("0.05"), places=3),  # limit offset
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seq=steps,
    allow_short=st.booleans(),
    rate=st.sampled_from(["0", "0.0005", "0.003"]),
    slip=st.sampled_from(["0", "5", "37"]),
)
def test_pnl_identity_and_ledger_replay(db, seq, allow_short, rate, slip):
    with db.transaction(force_rollback=True):
        for sym in ("TRDP1", "TRDP2"):
            instrument(db, sym)
        a = account(
            db,
            f"pnl-{next(_counter)}",
            cash="50000",
            allow_short=allow_short,
            commission_rate=rate,
            commission_min="1",
            slippage_bps=slip,
            max_position_pct=1000,
            max_gross_leverage=5,
        )
        t = T0
        for sym, side, qty, kind, close, off in seq:
            # one bar for the symbol, then the clock moves past it (fills resting orders, marks positions)
            o_, c_ = close, close
            db.execute(
                "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source) "
                "VALUES (%s, '1m', %s, %s, %s, %s, %s, 1000, 'test')",
                (sym, t, o_, max(o_, c_) * Decimal("1.01"), min(o_, c_) * Decimal("0.99"), c_),
            )
            t += timedelta(minutes=1)
            advance(db, a, t)
            if kind == "market":
                order(db, a, sym, side, qty)
            else:
                order(db, a, sym, side, qty, "limit", limit_price=(close * (1 + off)).quantize(Decimal("0.01")))
            check_invariants(db, a)
        # mark everything once more at new prices and check again
        for sym in ("TRDP1", "TRDP2"):
            db.execute(
                "INSERT INTO market.bars (symbol, interval, ts, open, high, low, close, volume, source) "
                "VALUES (%s, '1m', %s, 7.77, 7.77, 7.77, 7.77, 1000, 'test')",
                (sym, t),
            )
        advance(db, a, t + timedelta(minutes=1))
        check_invariants(db, a)
        q = db.execute(
            "SELECT count(*) FROM trading.positions WHERE account_id = %s AND qty <> 0 AND last_price <> 7.77", (a,)
        ).fetchone()[0]
        assert q == 0
