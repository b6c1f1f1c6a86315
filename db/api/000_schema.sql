-- The api schema itself (the migration runner drops and re-creates it on every migrate, then runs these files in
-- name order). Only views and functions live here, never tables; each file grants its own privileges.
GRANT USAGE ON SCHEMA api TO web_anon, trader, pgtrade_admin;
-- Belt and braces next to 0001's default privileges (which cover only the role that ran 0001): functions created
-- here by any role start without EXECUTE for PUBLIC. Each function file also revokes it explicitly.
ALTER DEFAULT PRIVILEGES IN SCHEMA api REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
COMMENT ON SCHEMA api IS
  'pgtrade REST API (PostgREST exposes only this schema). Anonymous callers read instruments, bars and health; a trader (JWT {"role": "trader", "account": "<name>"}) reads and trades its own account; pgtrade_admin every account. Errors: docs/errors.md.';
