"""internal.may_act (the candidate rule: can bars whose lows and highs span [lo, hi] act on a resting order?) and
trading.fill_rule (what one bar does to one order) state the same trigger and fill conditions twice: may_act over a
range, so match_orders and the live bar trigger skip the per-bar rule for orders no bar can reach; fill_rule per
bar. Hypothesis holds them together over random bars and orders:

- whenever fill_rule triggers or fills an order on some bar, may_act over the range of all the bars (their lowest
  low and highest high) is true: the candidate filter never drops an order a bar would act on;
- on a single bar (no volume cap), may_act over that bar's low and high is true exactly when fill_rule acts: the
  filter lets through nothing the bar cannot act on;
- market orders never rest, so may_act is false for them.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Prices on a coarse grid around 100 (so limits and stops often equal a bar's open, high or low exactly) and
# fine ones in between.
price = st.one_of(
    st.integers(min_value=95, max_value=105).map(Decimal),
    st.decimals(min_value=Decimal("90"), max_value=Decimal("110"), places=3),
)


@st.composite
def bar(draw):
    a, b, c = sorted([draw(price), draw(price), draw(price)])
    open_ = draw(st.sampled_from([a, b, c]))  # at the low, inside, or at the high
    volume = draw(st.sampled_from([Decimal(0), Decimal(150), Decimal(100000)]))
    return open_, c, a, volume


@st.composite
def resting_order(draw):
    type_ = draw(st.sampled_from(["limit", "stop", "stop_limit"]))
    return {
        "type": type_,
        "side": draw(st.sampled_from(["buy", "sell"])),
        "triggered": draw(st.booleans()) if type_ != "limit" else False,
        "limit_price": draw(price) if type_ in ("limit", "stop_limit") else None,
        "stop_price": draw(price) if type_ in ("stop", "stop_limit") else None,
        "remaining": Decimal(draw(st.integers(min_value=1, max_value=50))),
        "slippage_bps": draw(st.sampled_from([Decimal(0), Decimal(5), Decimal("37.5")])),
        "volume_cap_pct": draw(st.sampled_from([None, Decimal(1), Decimal(50)])),
    }


QUERY = """
WITH b AS (
  SELECT * FROM unnest(%(open)s::numeric[], %(high)s::numeric[], %(low)s::numeric[], %(volume)s::numeric[])
    WITH ORDINALITY b(open, high, low, volume, n)
)
SELECT b.n, (f.triggers OR f.fill_qty > 0) AS acts,
       internal.may_act(%(type)s, %(side)s, %(triggered)s, %(limit_price)s, %(stop_price)s, b.low, b.high) AS bar_may,
       internal.may_act(%(type)s, %(side)s, %(triggered)s, %(limit_price)s, %(stop_price)s,
                        min(b.low) OVER (), max(b.high) OVER ()) AS range_may
FROM b
CROSS JOIN LATERAL trading.fill_rule(%(type)s, %(side)s, %(limit_price)s, %(stop_price)s, %(triggered)s,
                                     %(remaining)s, 1, %(slippage_bps)s, %(volume_cap_pct)s,
                                     b.open, b.high, b.low, b.volume) f
ORDER BY b.n
"""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(o=resting_order(), bars=st.lists(bar(), min_size=1, max_size=6))
def test_may_act_admits_every_bar_fill_rule_acts_on(db, o, bars):
    rows = db.execute(
        QUERY,
        o
        | {
            "open": [b[0] for b in bars],
            "high": [b[1] for b in bars],
            "low": [b[2] for b in bars],
            "volume": [b[3] for b in bars],
        },
    ).fetchall()
    assert len(rows) == len(bars)
    for _n, acts, bar_may, range_may in rows:
        if acts:
            assert bar_may and range_may, (o, bars)
        if o["volume_cap_pct"] is None:
            assert bar_may == acts, (o, bars)


@given(side=st.sampled_from(["buy", "sell"]), triggered=st.booleans(), lo=price, hi=price)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_market_orders_are_never_candidates(db, side, triggered, lo, hi):
    got = db.execute(
        "SELECT internal.may_act('market', %s, %s, NULL, NULL, %s, %s)", (side, triggered, min(lo, hi), max(lo, hi))
    ).fetchone()[0]
    assert got is False
