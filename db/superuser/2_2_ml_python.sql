-- Superuser step (2): the PL/Python functions of the ML issue. plpython3u is an untrusted language, so only a
-- superuser may create functions in it, and they stay superuser-owned; each is listed in ops.superuser_objects
-- with its reason. None is SECURITY DEFINER and no web role may execute one: the owner's functions call them.

-- internal.onnx_run: run a registered ONNX model over a batch of feature rows.
-- The model's InferenceSession is built once per backend and cached in GD by model id and ONNX digest (models are
-- immutable, ml.tg_models__immutable; a new version is a new id), with one intra-op and one inter-op thread: the
-- server runs many backends, and each must not spread over every core.
CREATE OR REPLACE FUNCTION internal.onnx_run(model_id bigint, x double precision[], n_features integer)
RETURNS double precision[]
LANGUAGE plpython3u
STABLE
SET search_path = pg_catalog, pg_temp
AS $py$
cache = GD.setdefault("pgtrade_onnx", {})
entry = cache.get(model_id)
if entry is None:
    import hashlib

    import numpy as np
    import onnxruntime as ort

    plan = GD.get("pgtrade_onnx_plan")
    if plan is None:
        plan = plpy.prepare(
            "SELECT onnx, onnx_sha256, output_name, output_column, cardinality(features) AS n"
            " FROM ml.models WHERE id = $1", ["bigint"])
        GD["pgtrade_onnx_plan"] = plan
    rows = plpy.execute(plan, [model_id])
    if not rows:
        plpy.error(f"unknown model id {model_id}", sqlstate="ML002",
                   hint="see ml.models (pgtrade ml list) for the registered models")
    row = rows[0]
    onnx = bytes(row["onnx"])
    if hashlib.sha256(onnx).hexdigest() != row["onnx_sha256"]:
        plpy.error(f"model id {model_id}: its ONNX bytes do not match their recorded sha256", sqlstate="ML003")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx, sess_options=so, providers=["CPUExecutionProvider"])
    entry = (sess, sess.get_inputs()[0].name, row["output_name"], row["output_column"], row["n"], np)
    cache[model_id] = entry
sess, input_name, output_name, column, n_model, np = entry
if n_features != n_model:
    plpy.error(f"model id {model_id} takes {n_model} features, got {n_features}", sqlstate="ML004")
if not x:
    return []
arr = np.asarray(x, dtype=np.float32).reshape(-1, n_features)
out = sess.run([output_name], {input_name: arr})[0]
out = np.asarray(out)
if out.ndim == 2:
    out = out[:, column]
return out.astype(np.float64).ravel().tolist()
$py$;
COMMENT ON FUNCTION internal.onnx_run IS
  'Run model model_id (ml.models) over x (n rows x n_features, flattened row by row); returns the model''s output_name column output_column per row. Cached per backend.';
REVOKE ALL ON FUNCTION internal.onnx_run(bigint, double precision[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION internal.onnx_run(bigint, double precision[], integer) TO pgtrade_owner;

INSERT INTO ops.superuser_objects (object, reason) VALUES
  ('function internal.onnx_run(bigint,double precision[],integer)',
   'PL/Python (plpython3u, untrusted): runs ONNX models with onnxruntime inside the server')
ON CONFLICT (object) DO UPDATE SET reason = excluded.reason, exposed_reason = excluded.exposed_reason;
