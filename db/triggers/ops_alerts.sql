-- ops.alerts: ids taken in commit order (serialize) and a NOTIFY per alert (db/procedures/ops_alerts.sql says why).
CREATE OR REPLACE TRIGGER _010_serialize
  BEFORE INSERT ON ops.alerts
  FOR EACH STATEMENT EXECUTE FUNCTION ops.tg_alerts__serialize();
CREATE OR REPLACE TRIGGER _900_notify
  AFTER INSERT ON ops.alerts REFERENCING NEW TABLE AS new_alerts
  FOR EACH STATEMENT EXECUTE FUNCTION ops.tg_alerts__notify();
