-- The operations dashboard's data (`pgtrade dashboard`), in one place: the page, the JSON it refreshes from
-- (GET /data.json of `pgtrade dashboard --serve`) and the tests all read this one function, and Python only renders
-- it. Nothing here is computed a second way: portfolio value over time is the stored snapshots
-- (trading.portfolio_snapshots, written by trading.snapshot_portfolio), the current figures are trading.portfolio
-- and trading.position_values (the valuation rule), job health is api.health() as it is.
-- Reading: the account's newest orders and fills through their (account_id, id) indexes, the newest signals,
-- anomalies and open alerts through their primary keys, the snapshots through their (account_id, ts) key, thinned
-- to at most `points` per account (the last snapshot of each of `points` equal time buckets: real snapshots, never
-- interpolated).
CREATE OR REPLACE FUNCTION ops.dashboard(
  accounts text[] DEFAULT ARRAY['default'],
  since timestamptz DEFAULT NULL,
  max_rows integer DEFAULT 50,
  points integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  _ids bigint[];
  _missing text[];
  _accounts jsonb;
  _since timestamptz := coalesce(dashboard.since, '-infinity');
BEGIN
  IF dashboard.max_rows IS NULL OR dashboard.max_rows NOT BETWEEN 1 AND 10000
     OR dashboard.points IS NULL OR dashboard.points NOT BETWEEN 2 AND 100000 THEN
    RAISE EXCEPTION 'dashboard limits out of range: max_rows %, points %', dashboard.max_rows, dashboard.points
      USING ERRCODE = 'OP401',
            HINT = 'max_rows (rows per table) runs from 1 to 10000, points (per value curve) from 2 to 100000';
  END IF;
  IF dashboard.since > now() THEN
    RAISE EXCEPTION 'dashboard since % is in the future', dashboard.since USING ERRCODE = 'OP401',
      HINT = 'since is the earliest time shown: a past time, or NULL for everything';
  END IF;
  IF dashboard.accounts IS NULL THEN  -- every live account
    SELECT coalesce(array_agg(a.id ORDER BY a.id), ARRAY[]::bigint[]) INTO _ids
    FROM trading.accounts a WHERE a.kind = 'live';
  ELSE
    SELECT coalesce(array_agg(n.name ORDER BY n.ord), ARRAY[]::text[]) INTO _missing
    FROM unnest(dashboard.accounts) WITH ORDINALITY n(name, ord)
    WHERE NOT EXISTS (SELECT 1 FROM trading.accounts a WHERE a.name = n.name);
    IF cardinality(_missing) > 0 OR cardinality(dashboard.accounts) = 0 THEN
      RAISE EXCEPTION 'unknown account %', coalesce(nullif(array_to_string(_missing, ', ', '(null)'), ''), '(none given)')
        USING ERRCODE = 'TR013',
              HINT = 'pass the name of an existing trading account (SELECT name FROM trading.accounts), '
                     'or NULL (pgtrade dashboard --all) for every live account';
    END IF;
    SELECT array_agg(a.id ORDER BY n.ord) INTO _ids
    FROM unnest(dashboard.accounts) WITH ORDINALITY n(name, ord)
    JOIN trading.accounts a ON a.name = n.name;
  END IF;

  SELECT coalesce(jsonb_agg(x.obj ORDER BY x.ord), '[]') INTO _accounts
  FROM (
    SELECT i.ord, jsonb_build_object(
      'id', a.id, 'name', a.name, 'kind', a.kind, 'currency', a.currency, 'paused', a.paused,
      'clock', trading.account_clock(a.clock_mode, a.clock_ts),
      'portfolio', (SELECT to_jsonb(p) FROM trading.portfolio(a.id) p),
      'snapshot_count', (SELECT count(*) FROM trading.portfolio_snapshots s
                         WHERE s.account_id = a.id AND s.ts >= _since),
      'snapshots', (
        SELECT jsonb_build_object(
                 'ts', coalesce(jsonb_agg(t.ts ORDER BY t.ts), '[]'),
                 'total_value', coalesce(jsonb_agg(t.total_value ORDER BY t.ts), '[]'),
                 'cash', coalesce(jsonb_agg(t.cash ORDER BY t.ts), '[]'),
                 'drawdown', coalesce(jsonb_agg(t.drawdown ORDER BY t.ts), '[]'))
        FROM (
          SELECT DISTINCT ON (b.bucket) s.ts, s.total_value, s.cash, s.drawdown
          FROM trading.portfolio_snapshots s
          CROSS JOIN LATERAL (
            SELECT min(s2.ts) AS lo, max(s2.ts) AS hi FROM trading.portfolio_snapshots s2
            WHERE s2.account_id = a.id AND s2.ts >= _since) r
          CROSS JOIN LATERAL (
            SELECT CASE WHEN r.hi = r.lo THEN 0
                        ELSE least(floor(extract(epoch FROM s.ts - r.lo) / extract(epoch FROM r.hi - r.lo)
                                         * dashboard.points)::int, dashboard.points - 1) END AS bucket) b
          WHERE s.account_id = a.id AND s.ts >= _since
          ORDER BY b.bucket, s.ts DESC) t),
      'positions', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'symbol', v.symbol, 'qty', v.qty, 'avg_price', p.avg_price, 'last_price', v.last_price,
                 'last_price_at', v.last_price_at, 'value', v.value, 'unrealized_pnl', v.unrealized_pnl,
                 'realized_pnl', p.realized_pnl, 'opened_at', p.opened_at) ORDER BY abs(v.value) DESC, v.symbol),
               '[]')
        FROM trading.position_values v
        JOIN trading.positions p ON p.account_id = v.account_id AND p.symbol = v.symbol
        WHERE v.account_id = a.id AND v.qty <> 0),
      'orders_by_status', (
        SELECT coalesce(jsonb_object_agg(o.status, o.n), '{}')
        FROM (SELECT o.status, count(*) AS n FROM trading.orders o
              WHERE o.account_id = a.id AND o.created_at >= _since GROUP BY o.status) o),
      'orders', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'id', o.id, 'symbol', o.symbol, 'side', o.side, 'type', o.type, 'qty', o.qty,
                 'filled_qty', o.filled_qty, 'avg_fill_price', o.avg_fill_price, 'limit_price', o.limit_price,
                 'stop_price', o.stop_price, 'status', o.status, 'reject_code', o.reject_code,
                 'reject_reason', o.reject_reason, 'source', o.source, 'created_at', o.created_at,
                 'updated_at', o.updated_at) ORDER BY o.id DESC), '[]')
        FROM (SELECT * FROM trading.orders o WHERE o.account_id = a.id AND o.created_at >= _since
              ORDER BY o.id DESC LIMIT dashboard.max_rows) o),
      'fill_count', (SELECT count(*) FROM trading.fills f WHERE f.account_id = a.id AND f.ts >= _since),
      'fills', (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'id', f.id, 'order_id', f.order_id, 'symbol', f.symbol, 'side', f.side, 'qty', f.qty,
                 'price', f.price, 'commission', f.commission, 'realized_pnl', f.realized_pnl, 'ts', f.ts)
                 ORDER BY f.id DESC), '[]')
        FROM (SELECT * FROM trading.fills f WHERE f.account_id = a.id AND f.ts >= _since
              ORDER BY f.id DESC LIMIT dashboard.max_rows) f)
    ) AS obj
    FROM unnest(_ids) WITH ORDINALITY i(id, ord)
    JOIN trading.accounts a ON a.id = i.id
  ) x;

  RETURN jsonb_build_object(
    'generated_at', now(),
    'since', dashboard.since,
    'max_rows', dashboard.max_rows,
    'accounts', _accounts,
    'signals', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', s.id, 'model', m.name || ':' || m.version, 'symbol', s.symbol, 'interval', s.interval,
               'ts', s.ts, 'signal', s.signal, 'probability', s.probability, 'confidence', s.confidence,
               'close', s.close, 'created_at', s.created_at) ORDER BY s.id DESC), '[]')
      FROM (SELECT * FROM ml.signals s WHERE s.ts >= _since ORDER BY s.id DESC LIMIT dashboard.max_rows) s
      JOIN ml.models m ON m.id = s.model_id),
    'anomalies', (
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', an.id, 'symbol', an.symbol, 'interval', an.interval, 'ts', an.ts, 'type', an.type,
               'score', an.score, 'severity', an.severity, 'detected_at', an.detected_at) ORDER BY an.id DESC), '[]')
      FROM (SELECT * FROM ml.anomalies an WHERE an.ts >= _since ORDER BY an.id DESC LIMIT dashboard.max_rows) an),
    'alerts', (  -- open: not acknowledged; of the accounts shown, or of no account (market-wide)
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', al.id, 'raised_at', al.raised_at, 'kind', al.kind, 'severity', al.severity,
               'symbol', al.symbol, 'account', ac.name, 'message', al.message) ORDER BY al.id DESC), '[]')
      FROM (SELECT * FROM ops.alerts al
            WHERE al.acknowledged_at IS NULL AND al.raised_at >= _since
              AND (al.account_id IS NULL OR al.account_id = ANY (_ids))
            ORDER BY al.id DESC LIMIT dashboard.max_rows) al
      LEFT JOIN trading.accounts ac ON ac.id = al.account_id),
    'health', api.health());
END
$$;
REVOKE ALL ON FUNCTION ops.dashboard(text[], timestamptz, integer, integer) FROM PUBLIC;
COMMENT ON FUNCTION ops.dashboard(text[], timestamptz, integer, integer) IS
  'The data of the operations dashboard (pgtrade dashboard) as one JSON document. Per account (by name; NULL: every live account; TR013 for an unknown name): its portfolio now (trading.portfolio), portfolio value over time (trading.portfolio_snapshots since `since`, at most `points` of them: the last of each equal time bucket), open positions (trading.position_values), orders by status and the newest `max_rows` orders and fills. Across accounts: the newest `max_rows` signals (ml.signals) and anomalies (ml.anomalies), the open (unacknowledged) alerts of these accounts or of none (ops.alerts), and job health (api.health()). since NULL: everything. OP401 for max_rows outside 1..10000, points outside 2..100000 or a future since. Executed by the owner and superusers only (the CLI); web roles read the api views.';
