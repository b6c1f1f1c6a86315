-- The events outbox: a row per event and a small NOTIFY on channel pgtrade_events.
CREATE OR REPLACE FUNCTION internal.emit(
  account_id bigint, kind text, order_id bigint, ts timestamptz, payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp  -- its own path: cached plans survive callers with different paths
AS $$
DECLARE
  _id bigint;
BEGIN
  -- one statement: the row and its NOTIFY
  WITH e AS (
    INSERT INTO trading.events (account_id, kind, order_id, ts, payload)
    VALUES (emit.account_id, emit.kind, emit.order_id, emit.ts, coalesce(emit.payload, '{}'))
    RETURNING id
  )
  SELECT e.id FROM e, pg_notify('pgtrade_events', json_build_object(
    'id', e.id, 'account_id', emit.account_id, 'kind', emit.kind, 'order_id', emit.order_id)::text) n
  INTO _id;
  RETURN _id;
END
$$;
COMMENT ON FUNCTION internal.emit IS
  'Record an event in trading.events and NOTIFY pgtrade_events with {id, account_id, kind, order_id} (delivered at commit).';
REVOKE ALL ON FUNCTION internal.emit(bigint, text, bigint, timestamptz, jsonb) FROM PUBLIC;
