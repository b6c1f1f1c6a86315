-- The api schema itself (the migration runner drops and re-creates it on every migrate, then runs these files in
-- name order). Only views and functions live here, never tables; each file grants its own privileges.
GRANT USAGE ON SCHEMA api TO web_anon, trader, pgtrade_admin;
-- Functions created here start without EXECUTE for PUBLIC by the owner's default privileges
-- (db/superuser/1_2_database.sql); each function file also revokes it explicitly, next to its grants.
COMMENT ON SCHEMA api IS
  'pgtrade REST API (PostgREST exposes only this schema). Anonymous callers read instruments, bars and health; a trader (JWT {"role": "trader", "account": "<name>"}) reads and trades its own account; pgtrade_admin every account. Errors: docs/errors.md.';
