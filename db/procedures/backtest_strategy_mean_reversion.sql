-- Mean reversion: buy what fell too far, sell what rose too far (indicators: backtest_strategy_indicators.sql).
--
-- indicator 'rsi':        long when RSI < oversold; at RSI > overbought flat (short with allow_short).
-- indicator 'bollinger':  long when the close is below the lower band; flat when it crosses the middle band (the
--                         mean); at a close above the upper band flat (short with allow_short), the short covered
--                         when the close crosses the middle band again.
-- indicator 'both':       entries need both (RSI oversold and the close below the lower band; mirrored for shorts),
--                         the exit is the crossing of the middle band.
-- A crossing of the middle band at bar t: the close was below it at t-1 and is at or above it at t, or the mirror.
-- Decisions only at those events (NULL elsewhere: keep the position), so the rule needs no state: after a long
-- entry below the lower band the next crossing is upward, the exit; after a short entry the next is downward.
-- Optional brackets: stop_loss_atr / take_profit_atr (default off) put the stop-loss at close -/+ m x ATR(atr_period)
-- and the take-profit at close +/- m x ATR on each entry (a long: stop below, target above), rounded to the
-- instrument's tick. Brackets make the run exact (the children rest and fill through the trading core's matching
-- code); a stop-loss makes risk sizing possible. With a stop-loss asked, an entry needs an ATR (no entry before it).
CREATE OR REPLACE FUNCTION backtest.mean_reversion(run backtest.runs)
RETURNS SETOF backtest.decision
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _p jsonb := mean_reversion.run.params;
  _ind text := _p->>'indicator';
  _rsi_n integer;
  _bb_n integer;
  _bb_k numeric;
  _atr_n integer;
  _os double precision;
  _ob double precision;
  _sl numeric;
  _tp numeric;
  _short boolean;
  _bad text;
BEGIN
  BEGIN
    _rsi_n := (_p->>'rsi_period')::integer;
    _bb_n := (_p->>'bb_period')::integer;
    _bb_k := (_p->>'bb_k')::numeric;
    _atr_n := (_p->>'atr_period')::integer;
    _os := (_p->>'oversold')::double precision;
    _ob := (_p->>'overbought')::double precision;
    _sl := (_p->>'stop_loss_atr')::numeric;
    _tp := (_p->>'take_profit_atr')::numeric;
    _short := coalesce((_p->>'allow_short')::boolean, false);
    IF _ind IS NULL OR _ind NOT IN ('rsi', 'bollinger', 'both') THEN
      _bad := 'indicator must be rsi, bollinger or both';
    ELSIF _ind IN ('rsi', 'both') AND NOT coalesce(_rsi_n >= 1, false) THEN
      _bad := 'rsi_period must be an integer >= 1';
    ELSIF _ind IN ('rsi', 'both') AND NOT coalesce(0 <= _os AND _os < _ob AND _ob <= 100, false) THEN
      _bad := 'oversold and overbought must satisfy 0 <= oversold < overbought <= 100';
    ELSIF _ind IN ('bollinger', 'both') AND NOT coalesce(_bb_n >= 2, false) THEN
      _bad := 'bb_period must be an integer >= 2';
    ELSIF _ind IN ('bollinger', 'both') AND NOT coalesce(_bb_k > 0, false) THEN
      _bad := 'bb_k must be positive';
    ELSIF (_sl IS NOT NULL OR _tp IS NOT NULL) AND NOT coalesce(_atr_n >= 1, false) THEN
      _bad := 'atr_period must be an integer >= 1';
    ELSIF NOT coalesce(_sl > 0, true) OR NOT coalesce(_tp > 0, true) THEN
      _bad := 'stop_loss_atr and take_profit_atr must be positive (or null: no bracket)';
    END IF;
  EXCEPTION WHEN data_exception THEN
    _bad := format('a parameter has the wrong type (%s)', SQLERRM);
  END;
  IF _bad IS NOT NULL THEN
    RAISE EXCEPTION 'invalid mean_reversion parameters: %', _bad USING ERRCODE = 'BT004',
      HINT = 'e.g. {"indicator": "bollinger", "bb_period": 20, "bb_k": 2} or {"indicator": "rsi", "rsi_period": 14, "oversold": 30, "overbought": 70}';
  END IF;

  RETURN QUERY
  WITH i AS (
    SELECT x.symbol, x.ts, x.close, x.rsi, x.bb_mid, x.bb_lower, x.bb_upper, x.atr,
           lag(x.close) OVER w AS pc, lag(x.bb_mid) OVER w AS pmid
    FROM backtest.indicators(mean_reversion.run,
                             CASE WHEN _ind IN ('rsi', 'both') THEN _rsi_n END,
                             CASE WHEN _ind IN ('bollinger', 'both') THEN _bb_n END,
                             _bb_k,
                             CASE WHEN _sl IS NOT NULL OR _tp IS NOT NULL THEN _atr_n END) x
    WINDOW w AS (PARTITION BY x.symbol ORDER BY x.ts)
  ), s AS (
    SELECT i.symbol, i.ts, i.close, i.atr,
           CASE _ind WHEN 'rsi' THEN i.rsi < _os
                     WHEN 'bollinger' THEN i.close < i.bb_lower
                     ELSE i.rsi < _os AND i.close < i.bb_lower END AS go_long,
           CASE _ind WHEN 'rsi' THEN i.rsi > _ob
                     WHEN 'bollinger' THEN i.close > i.bb_upper
                     ELSE i.rsi > _ob AND i.close > i.bb_upper END AS go_short,
           _ind <> 'rsi' AND ((i.pc < i.pmid AND i.close >= i.bb_mid) OR (i.pc > i.pmid AND i.close <= i.bb_mid)) AS crosses
    FROM i
    WHERE i.ts >= mean_reversion.run.start_ts
  ), d AS (
    SELECT s.symbol, s.ts, s.close, s.atr,
           CASE WHEN s.go_long AND (_sl IS NULL OR s.atr IS NOT NULL) THEN 1::numeric
                WHEN s.go_short AND _short AND (_sl IS NULL OR s.atr IS NOT NULL) THEN -1::numeric
                WHEN s.go_short OR s.crosses THEN 0::numeric
           END AS target
    FROM s
  )
  SELECT d.symbol, d.ts, d.target,
         CASE WHEN d.target <> 0 THEN nullif(greatest(round((d.close - d.target * _sl * d.atr::numeric) / t.tick) * t.tick, 0), 0) END,
         CASE WHEN d.target <> 0 THEN nullif(greatest(round((d.close + d.target * _tp * d.atr::numeric) / t.tick) * t.tick, 0), 0) END
  FROM d
  LEFT JOIN market.instruments ins ON ins.symbol = d.symbol
  CROSS JOIN LATERAL (SELECT coalesce(ins.tick_size, 0.01) AS tick) t
  WHERE d.target IS NOT NULL;
END
$$;
COMMENT ON FUNCTION backtest.mean_reversion IS
  'Strategy mean_reversion: RSI (Wilder) and/or Bollinger bands. Long when oversold / below the lower band, flat at the mean (Bollinger) or when overbought, short mirrored with allow_short; optional ATR brackets (stop_loss_atr, take_profit_atr). docs/backtesting.md, "Strategies".';

SELECT backtest.register_strategy('mean_reversion', 'backtest.mean_reversion(backtest.runs)',
  'Mean reversion: long when RSI is oversold or the close is below the lower Bollinger band, flat at the middle band or when overbought (short with allow_short); optional ATR stop-loss / take-profit brackets.',
  '{"indicator": "bollinger", "rsi_period": 14, "oversold": 30, "overbought": 70, "bb_period": 20, "bb_k": 2,
    "atr_period": 14, "stop_loss_atr": null, "take_profit_atr": null}',
  '{"bb_period": [10, 20, 40], "bb_k": [1.5, 2, 2.5]}');
