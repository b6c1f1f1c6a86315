-- Roles of the REST API (PostgREST). Roles belong to the cluster, not the database: each is created only when
-- missing, so a second pgtrade database on the same server (a scratch copy, a test database) reuses them.
--   web_anon       requests without a JWT: market data and health only
--   trader         a JWT {"role": "trader", "account": "<name>"}: its own account only
--   pgtrade_admin  every account (the account named by the claim or an explicit argument)
--   authenticator  the login PostgREST connects as; NOINHERIT, it only switches to the three roles above.
--                  No password here: docker/db/prepare.py sets it from PGRST_AUTHENTICATOR_PASSWORD.
-- The roles get USAGE on schema api and privileges on its views and functions only (db/api/*.sql, next to each
-- object); market, trading, ops and the rest stay unreachable.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'web_anon') THEN
    CREATE ROLE web_anon NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'trader') THEN
    CREATE ROLE trader NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrade_admin') THEN
    CREATE ROLE pgtrade_admin NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
  END IF;
END
$$;

GRANT web_anon, trader, pgtrade_admin TO authenticator;

COMMENT ON ROLE web_anon IS 'pgtrade API: anonymous requests (market data and health)';
COMMENT ON ROLE trader IS 'pgtrade API: a trader, restricted to the account named by the JWT claim "account"';
COMMENT ON ROLE pgtrade_admin IS 'pgtrade API: administrator, every account';
COMMENT ON ROLE authenticator IS 'pgtrade API: the login role of PostgREST (switches to web_anon, trader or pgtrade_admin)';
