-- Superuser step (2): TimescaleDB's policies on pgtrade's hypertables and continuous aggregates run as
-- pgtrade_jobs. TimescaleDB gives a policy the owner of its table (pgtrade_owner, NOLOGIN), and its scheduler
-- starts the job's background worker as that role, which PostgreSQL 15 refuses for a role without LOGIN
-- ("role is not permitted to log in", measured here). TimescaleDB has no API to name another job owner, so the
-- owner is set in its catalog; pgtrade_jobs is a member of pgtrade_owner and so may compress and refresh what the
-- owner owns. alter_job() afterwards makes the running scheduler reload the job (it caches the owner).
DO $$
DECLARE
  _j record;
BEGIN
  FOR _j IN
    UPDATE _timescaledb_config.bgw_job j SET owner = 'pgtrade_jobs'::regrole
    WHERE j.owner = 'pgtrade_owner'::regrole
    RETURNING j.id, j.scheduled
  LOOP
    PERFORM public.alter_job(_j.id, scheduled => _j.scheduled);
  END LOOP;
END
$$;
