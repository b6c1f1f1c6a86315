-- The events outbox: a row per event and a small NOTIFY on channel pgtrade_events.
CREATE OR REPLACE FUNCTION trading.emit(
  account_id bigint, kind text, order_id bigint, ts timestamptz, payload jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
  _id bigint;
BEGIN
  INSERT INTO trading.events (account_id, kind, order_id, ts, payload)
  VALUES (emit.account_id, emit.kind, emit.order_id, emit.ts, coalesce(emit.payload, '{}'))
  RETURNING id INTO _id;
  PERFORM pg_notify('pgtrade_events', json_build_object(
    'id', _id, 'account_id', emit.account_id, 'kind', emit.kind, 'order_id', emit.order_id)::text);
  RETURN _id;
END
$$;
COMMENT ON FUNCTION trading.emit IS
  'Record an event in trading.events and NOTIFY pgtrade_events with {id, account_id, kind, order_id} (delivered at commit).';
