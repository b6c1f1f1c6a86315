-- A private schema for the trading core's internals: the functions only other functions call (the one place
-- positions change, order endings, the events outbox, bar matching and marking). Calling one of them directly
-- would bypass the checks of the procedures that call them (a fill at any price, a forged event in the outbox,
-- bars that never happened), so nobody but the owner reaches the schema: no USAGE for PUBLIC, no grants. The
-- procedures meant for psql users stay in market and trading; the functions themselves live in the repeatable
-- files db/procedures/internal_*.sql.
CREATE SCHEMA internal;
COMMENT ON SCHEMA internal IS
  'Trading internals called only by other functions (apply_fill, end_order, emit, match_orders, execute_bar_event, may_act, mark_latest, mark_positions). No grants: only the owner reaches it; users call trading.* and api.*.';
REVOKE ALL ON SCHEMA internal FROM PUBLIC;
-- (No ALTER DEFAULT PRIVILEGES IN SCHEMA here: a per-schema default can only add privileges, never revoke the
-- global EXECUTE for PUBLIC. Without USAGE on the schema nobody else can name its functions; each internal_*.sql
-- file also revokes EXECUTE from PUBLIC on what it defines.)
