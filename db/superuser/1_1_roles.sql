-- Superuser step (1): roles and what they may do. Roles belong to the cluster, not the database: each is created
-- only when missing (a second pgtrade database on the same server reuses them), and their attributes and
-- settings are re-asserted on every migrate, so a database created before a change gets it too.
--
--   pgtrade_owner  NOLOGIN, not superuser, no BYPASSRLS, no CREATEROLE/CREATEDB: owns every schema, table, view,
--                  sequence and function of pgtrade; migrate does its DDL as this role (SET ROLE). The api
--                  SECURITY DEFINER functions therefore run with the owner's rights, never a superuser's.
--   pgtrade_jobs   runs the background jobs (pg_cron's schedules, TimescaleDB's policies on pgtrade's tables) as
--                  a member of pgtrade_owner. It has the LOGIN attribute only because PostgreSQL 15 starts a
--                  background worker solely as a role that may log in (a NOLOGIN job owner ends in
--                  `FATAL: role "..." is not permitted to log in`, measured with TimescaleDB's scheduler here). It
--                  has no password and pgtrade's pg_hba.conf requires scram-sha-256 for every connection, so
--                  nobody can log in as it.
--   web_anon, trader, pgtrade_admin  the REST API's roles (NOLOGIN; PostgREST switches to them), see 0010.
--   authenticator  the login PostgREST connects as; NOINHERIT, it only switches to the three roles above.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrade_owner') THEN
    CREATE ROLE pgtrade_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrade_jobs') THEN
    CREATE ROLE pgtrade_jobs LOGIN;
  END IF;
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
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgtrade_monitor') THEN
    CREATE ROLE pgtrade_monitor LOGIN;
  END IF;
END
$$;

ALTER ROLE pgtrade_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION INHERIT;
ALTER ROLE pgtrade_jobs LOGIN PASSWORD NULL NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION INHERIT;
GRANT pgtrade_owner TO pgtrade_jobs;
ALTER ROLE web_anon NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
ALTER ROLE trader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
ALTER ROLE pgtrade_admin NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
ALTER ROLE authenticator LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;
GRANT web_anon, trader, pgtrade_admin TO authenticator;

-- Resource limits of web requests. PostgREST switches to the request's role with SET LOCAL ROLE, which applies no
-- role setting by itself; PostgREST (v12, "impersonated role settings") reads these from pg_db_role_setting and
-- applies them per request with set_config(..., true). statement_timeout bounds any one request (an anonymous
-- /bars with no filter would otherwise stream every stored bar for minutes; PostgREST's db-max-rows in
-- docker-compose.yml caps the rows). authenticator's own setting covers PostgREST's schema-cache queries.
ALTER ROLE web_anon SET statement_timeout = '3s';
ALTER ROLE trader SET statement_timeout = '5s';
ALTER ROLE pgtrade_admin SET statement_timeout = '30s';
ALTER ROLE authenticator SET statement_timeout = '10s';
ALTER ROLE web_anon SET work_mem = '16MB';
ALTER ROLE trader SET work_mem = '16MB';

COMMENT ON ROLE pgtrade_owner IS 'pgtrade: owns every schema, table and function (NOLOGIN; migrate runs its DDL as this role)';
COMMENT ON ROLE pgtrade_jobs IS 'pgtrade: runs pg_cron schedules and TimescaleDB policies (member of pgtrade_owner; LOGIN without a password, for background workers only)';
COMMENT ON ROLE web_anon IS 'pgtrade API: anonymous requests (market data and health)';
COMMENT ON ROLE trader IS 'pgtrade API: a trader, restricted to the account named by the JWT claim "account"';
COMMENT ON ROLE pgtrade_admin IS 'pgtrade API: administrator, every account';
COMMENT ON ROLE authenticator IS 'pgtrade API: the login role of PostgREST (switches to web_anon, trader or pgtrade_admin)';

-- pgtrade_monitor: the login of the Prometheus exporter (docker/postgres_exporter). A member of pg_monitor (the
-- server's statistics views, other sessions' states and query texts included) that executes the ops.metrics_*
-- functions (db/procedures/ops_metrics.sql) and reads no table of pgtrade. Its password is not set here (migrate
-- re-asserts this file): the docker entry point sets it from $PGTRADE_MONITOR_PASSWORD, like authenticator's.
ALTER ROLE pgtrade_monitor LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION INHERIT;
GRANT pg_monitor TO pgtrade_monitor;
ALTER ROLE pgtrade_monitor SET statement_timeout = '10s';
COMMENT ON ROLE pgtrade_monitor IS 'pgtrade metrics: the Prometheus exporter''s login (member of pg_monitor; executes ops.metrics_* only)';
