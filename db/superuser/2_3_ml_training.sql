-- Superuser step (2): training inside the database (issue 12, section 4: the retraining job needs no process
-- outside the server). The server cannot import the project's code from the checkout (the postgres OS user may not
-- read it, e.g. in CI or docker), so migrate copies the sources of the ``ml`` package into internal.python_modules
-- (pgtrade/migrate.py, after this file) and a PL/Python importer loads them from there: the same ``ml`` code trains
-- from a client and in the server. plpython3u is untrusted: these functions stay superuser-owned, are listed in
-- ops.superuser_objects, are not SECURITY DEFINER and only pgtrade_owner (and pgtrade_jobs, its member) runs them;
-- their queries run with the caller's rights.

CREATE TABLE IF NOT EXISTS internal.python_modules (
  name       text PRIMARY KEY CONSTRAINT python_modules_name CHECK (name ~ '^ml(\.[a-z_][a-z0-9_]*)*$'),
  is_package boolean NOT NULL,
  source     text NOT NULL,
  sha256     text NOT NULL,
  loaded_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE internal.python_modules IS
  'Sources of the project''s ml package, copied by migrate from ml/*.py, imported by PL/Python (internal.python_importer). Superuser-owned: what runs as untrusted code in the server is written by the superuser alone.';
REVOKE ALL ON TABLE internal.python_modules FROM PUBLIC;
GRANT SELECT ON TABLE internal.python_modules TO pgtrade_owner;

-- Install in GD (shared by every PL/Python function of this backend) the function that imports ml modules from
-- internal.python_modules: a meta-path finder serves their sources; when the set of digests changes (a migrate
-- loaded new code) the cached ml modules are dropped and imported again.
CREATE OR REPLACE FUNCTION internal.python_importer()
RETURNS void
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $py$
if "pgtrade_ml_import" in GD:
    return None
import hashlib
import importlib
import importlib.abc
import importlib.util
import sys


class _TableFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self.sources = {}
        self.packages = set()
        self.digest = None

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.sources:
            return None
        return importlib.util.spec_from_loader(
            fullname, self, origin=f"internal.python_modules:{fullname}", is_package=fullname in self.packages)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(self.sources[module.__name__], f"<internal.python_modules {module.__name__}>", "exec")
        exec(code, module.__dict__)


finder = _TableFinder()
sys.meta_path.insert(0, finder)
plan = plpy.prepare("SELECT name, is_package, source, sha256 FROM internal.python_modules ORDER BY name")


def load(name):
    rows = plpy.execute(plan)
    digest = hashlib.sha256(",".join(r["name"] + ":" + r["sha256"] for r in rows).encode()).hexdigest()
    if digest != finder.digest:
        if not rows:
            plpy.error("no ml modules in internal.python_modules", sqlstate="ML110",
                       hint="run pgtrade db migrate, which loads them from ml/*.py")
        finder.sources = {r["name"]: r["source"] for r in rows}
        finder.packages = {r["name"] for r in rows if r["is_package"]}
        for mod in [m for m in sys.modules if m == "ml" or m.startswith("ml.")]:
            del sys.modules[mod]
        importlib.invalidate_caches()
        finder.digest = digest
    return importlib.import_module(name)


GD["pgtrade_ml_import"] = load
$py$;
COMMENT ON FUNCTION internal.python_importer IS
  'Install, once per backend, GD[''pgtrade_ml_import''](name): import a module of the ml package from internal.python_modules (reloaded when their digests change).';

-- The model kinds the ml package knows, and the task of each (ml/models.py TASKS).
CREATE OR REPLACE FUNCTION internal.model_kinds(OUT kind text, OUT task text)
RETURNS SETOF record
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $py$
if "pgtrade_ml_import" not in GD:
    plpy.execute("SELECT internal.python_importer()")
models = GD["pgtrade_ml_import"]("ml.models")
return sorted(models.TASKS.items())
$py$;
COMMENT ON FUNCTION internal.model_kinds IS 'The model kinds of the ml package (ml/models.py) and the task of each.';

-- Fit a model of this kind on the window's training rows (ml.training_rows: ml.features + ml.labels), evaluate it
-- on the held-out final part of the window (time-ordered), score the version compare_id (if any) on the same test
-- rows through internal.onnx_run, and export to ONNX. Registers nothing: ml.train does (owner's SQL).
CREATE OR REPLACE FUNCTION internal.train_model(
  kind text, symbols text[], "interval" text, train_from timestamptz, train_until timestamptz, params jsonb,
  compare_id bigint,
  OUT onnx bytea, OUT output_name text, OUT output_column integer, OUT result jsonb)
LANGUAGE plpython3u
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $py$
if "pgtrade_ml_import" not in GD:
    plpy.execute("SELECT internal.python_importer()")
train = GD["pgtrade_ml_import"]("ml.train")
try:
    return train.train_in_server(plpy, kind, symbols, interval, train_from, train_until, params, compare_id)
except ValueError as exc:
    plpy.error(f"cannot train {kind} on {','.join(symbols)} {interval}: {exc}", sqlstate="ML102",
               hint="widen the training window (more bars), or check the symbols and interval have bars")
$py$;
COMMENT ON FUNCTION internal.train_model IS
  'Fit, evaluate out of sample (held-out final part of the window, beside the naive baselines and the version compare_id) and export to ONNX a model of this kind; ml.train registers it.';

-- Walk-forward evaluation of a model kind over the history up to until_ts.
CREATE OR REPLACE FUNCTION internal.evaluate_model(
  kind text, symbols text[], "interval" text, until_ts timestamptz, params jsonb, train integer, test integer,
  purge integer)
RETURNS jsonb
LANGUAGE plpython3u
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $py$
if "pgtrade_ml_import" not in GD:
    plpy.execute("SELECT internal.python_importer()")
train_mod = GD["pgtrade_ml_import"]("ml.train")
try:
    return train_mod.evaluate_in_server(plpy, kind, symbols, interval, until_ts, params, train, test, purge)
except ValueError as exc:
    plpy.error(f"cannot evaluate {kind} on {','.join(symbols)} {interval}: {exc}", sqlstate="ML102",
               hint="use fewer training/test bars per fold, or a longer history")
$py$;
COMMENT ON FUNCTION internal.evaluate_model IS
  'Walk-forward out-of-sample evaluation of a model kind (rolling train window, purge gap, test window), beside the naive baselines on the same rows.';

-- Inputs and outputs of ONNX bytes (for pgtrade ml import): loads them in onnxruntime, so bytes that are no model
-- are refused here.
CREATE OR REPLACE FUNCTION internal.onnx_describe(onnx bytea)
RETURNS jsonb
LANGUAGE plpython3u
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $py$
import json

import onnxruntime as ort

so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
try:
    sess = ort.InferenceSession(bytes(onnx), sess_options=so, providers=["CPUExecutionProvider"])
except Exception as exc:
    plpy.error(f"not an ONNX model onnxruntime can load: {str(exc).splitlines()[0][:300]}", sqlstate="ML106",
               hint="export the model with skl2onnx (or another ONNX converter) and import the .onnx file")


def desc(a):
    return {"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else None for d in a.shape]}


return json.dumps({"inputs": [desc(a) for a in sess.get_inputs()], "outputs": [desc(a) for a in sess.get_outputs()]})
$py$;
COMMENT ON FUNCTION internal.onnx_describe IS 'Inputs and outputs (name, type, shape; NULL for a free dimension) of ONNX bytes, loaded in onnxruntime.';

DO $$
DECLARE
  _f text;
BEGIN
  FOREACH _f IN ARRAY ARRAY[
    'internal.python_importer()',
    'internal.model_kinds()',
    'internal.train_model(text,text[],text,timestamptz,timestamptz,jsonb,bigint)',
    'internal.evaluate_model(text,text[],text,timestamptz,jsonb,integer,integer,integer)',
    'internal.onnx_describe(bytea)'] LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', _f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pgtrade_owner', _f);
  END LOOP;
END
$$;

INSERT INTO ops.superuser_objects (object, reason) VALUES
  ('table internal.python_modules',
   'sources of the ml package that PL/Python imports and runs untrusted in the server: only the superuser (migrate) writes them'),
  ('function internal.python_importer()',
   'PL/Python (plpython3u, untrusted): imports the ml package from internal.python_modules'),
  ('function internal.model_kinds()',
   'PL/Python (plpython3u, untrusted): the model kinds of the ml package'),
  ('function internal.train_model(text,text[],text,timestamp with time zone,timestamp with time zone,jsonb,bigint)',
   'PL/Python (plpython3u, untrusted): trains a scikit-learn model in the server and exports it to ONNX'),
  ('function internal.evaluate_model(text,text[],text,timestamp with time zone,jsonb,integer,integer,integer)',
   'PL/Python (plpython3u, untrusted): walk-forward evaluation of a model kind in the server'),
  ('function internal.onnx_describe(bytea)',
   'PL/Python (plpython3u, untrusted): loads ONNX bytes in onnxruntime to check an imported model')
ON CONFLICT (object) DO UPDATE SET reason = excluded.reason, exposed_reason = excluded.exposed_reason;
