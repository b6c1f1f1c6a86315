-- Alerts (ops.alerts) and their delivery to consumers (pgtrade alerts follow).
--
-- Every alert row is also sent as NOTIFY pgtrade_alerts {id, kind, severity, symbol}, in the inserting transaction
-- (delivered at its commit): the trigger ops.tg_alerts__notify, whoever inserts.
--
-- A consumer's cursor (ops.alert_cursors.last_id) says "every alert up to this id is delivered". That holds only if
-- alert ids are visible in id order: an identity value is taken at insert, not at commit, so without more an alert
-- id 10 of a long ingest transaction could commit after alert id 11 had been delivered and the cursor moved past
-- it. So every statement that inserts alerts first takes a transaction-scoped advisory lock (ops.tg_alerts__serialize):
-- alert-raising transactions take their ids one after another, each after the previous one ended. Alerts are rare
-- (HIGH/CRITICAL anomalies of live bars), so the wait is rare too.

CREATE OR REPLACE FUNCTION ops.tg_alerts__serialize()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- before the statement takes any id; held until the transaction ends
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgtrade:ops.alerts'));
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION ops.tg_alerts__serialize IS
  'Statement trigger before INSERT on ops.alerts: serialize alert-raising transactions so alert ids become visible in id order (a consumer cursor never passes an alert that commits later).';

CREATE OR REPLACE FUNCTION ops.tg_alerts__notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_notify('pgtrade_alerts', json_build_object(
    'id', n.id, 'kind', n.kind, 'severity', n.severity, 'symbol', n.symbol)::text)
  FROM (SELECT a.id, a.kind, a.severity, a.symbol FROM new_alerts a ORDER BY a.id) n;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION ops.tg_alerts__notify IS
  'Statement trigger after INSERT on ops.alerts: NOTIFY pgtrade_alerts {id, kind, severity, symbol} per alert (sent at commit).';

-- The alerts a consumer has not been delivered yet, oldest first (a consumer without a cursor: every alert).
CREATE OR REPLACE FUNCTION ops.alerts_pending(consumer text, max_rows integer DEFAULT 100)
RETURNS SETOF ops.alerts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.* FROM ops.alerts a
  WHERE a.id > coalesce((SELECT c.last_id FROM ops.alert_cursors c WHERE c.consumer = alerts_pending.consumer), 0)
  ORDER BY a.id
  LIMIT alerts_pending.max_rows
$$;
COMMENT ON FUNCTION ops.alerts_pending IS
  'Alerts after the consumer''s cursor (not yet delivered to it), oldest first, at most max_rows.';

-- Record that a consumer delivered an alert: its cursor moves to it. Delivery is in id order, one alert at a time:
-- moving past an undelivered alert is refused (ML033), a repeated or older id changes nothing (a consumer that
-- crashed between delivering and recording delivers that alert again: at least once, never skipped).
CREATE OR REPLACE FUNCTION ops.alert_delivered(consumer text, alert_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _last bigint;
  _skipped bigint;
BEGIN
  IF alert_delivered.consumer IS NULL OR btrim(alert_delivered.consumer) = '' THEN
    RAISE EXCEPTION 'alert consumer name is empty' USING ERRCODE = 'ML034',
      HINT = 'name the consumer (pgtrade alerts follow --consumer NAME)';
  END IF;
  INSERT INTO ops.alert_cursors (consumer) VALUES (alert_delivered.consumer) ON CONFLICT ON CONSTRAINT alert_cursors_pkey DO NOTHING;
  SELECT c.last_id INTO _last FROM ops.alert_cursors c WHERE c.consumer = alert_delivered.consumer FOR UPDATE;
  IF alert_delivered.alert_id <= _last THEN
    RETURN _last;
  END IF;
  IF NOT EXISTS (SELECT FROM ops.alerts a WHERE a.id = alert_delivered.alert_id) THEN
    RAISE EXCEPTION 'unknown alert %', alert_delivered.alert_id USING ERRCODE = 'ML032',
      HINT = 'deliver the alerts ops.alerts_pending returns';
  END IF;
  SELECT min(a.id) INTO _skipped FROM ops.alerts a WHERE a.id > _last AND a.id < alert_delivered.alert_id;
  IF _skipped IS NOT NULL THEN
    RAISE EXCEPTION 'consumer % would skip undelivered alert %', alert_delivered.consumer, _skipped
      USING ERRCODE = 'ML033', DETAIL = format('cursor at %s, delivered %s', _last, alert_delivered.alert_id),
            HINT = 'deliver alerts in id order (ops.alerts_pending)';
  END IF;
  UPDATE ops.alert_cursors c SET last_id = alert_delivered.alert_id, updated_at = now()
  WHERE c.consumer = alert_delivered.consumer;
  RETURN alert_delivered.alert_id;
END
$$;
COMMENT ON FUNCTION ops.alert_delivered IS
  'Move the consumer''s cursor to an alert it delivered (in id order; ML033 if that would skip an undelivered alert); returns the cursor.';

-- Acknowledge alerts: a person has seen them (pgtrade alerts ack). Health counts the open (unacknowledged) alerts by
-- severity. Given ids, those alerts; given upto, every alert up to that id; an alert acknowledged before keeps its
-- time. Returns how many were acknowledged now.
CREATE OR REPLACE FUNCTION ops.acknowledge_alerts(ids bigint[] DEFAULT NULL, upto bigint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  _n integer;
BEGIN
  IF acknowledge_alerts.ids IS NULL AND acknowledge_alerts.upto IS NULL THEN
    RAISE EXCEPTION 'no alerts named' USING ERRCODE = 'ML035',
      HINT = 'pass alert ids, or upto (every alert up to that id): pgtrade alerts ack ID... | --all';
  END IF;
  UPDATE ops.alerts a SET acknowledged_at = now()
  WHERE a.acknowledged_at IS NULL
    AND (a.id = ANY (acknowledge_alerts.ids) OR a.id <= acknowledge_alerts.upto);
  GET DIAGNOSTICS _n = ROW_COUNT;
  RETURN _n;
END
$$;
REVOKE ALL ON FUNCTION ops.acknowledge_alerts(bigint[], bigint) FROM PUBLIC;
COMMENT ON FUNCTION ops.acknowledge_alerts(bigint[], bigint) IS
  'Mark alerts acknowledged (seen by a person): these ids, or every alert up to upto; ML035 when neither is given. Returns how many were acknowledged now.';
