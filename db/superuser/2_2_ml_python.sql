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
SET search_path = pg_catalog, pg_temp  -- like every internal function (measured: +1 us per call)
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

-- internal.window_stats: the robust statistics each bar's anomaly scores compare it with (db/procedures/
-- ml_anomalies.sql), for every bar of one series at once. Bar i (1-based, in time order) is compared with the
-- `win` bars before it, i-win .. i-1 (fewer at the start of the series), ignoring NULL and NaN values:
--   r_med, r_sigma  median and robust sigma of r (the rule below)
--   g_med           median of g
--   v_med           median of v
-- for the bars from_pos .. cardinality(r) (earlier bars only serve as the first ones' windows).
-- The rule, one place: median = percentile_cont(0.5), PostgreSQL's interpolation (the middle value, or for an even
-- count lo + 0.5 * (hi - lo)); sigma = 1.4826 x MAD (the median absolute deviation from the median, normal-
-- consistent); when more than half the values equal the median (MAD = 0, a price that rarely moves) 1.2533 x the
-- mean absolute deviation from the median (normal-consistent too, summed in time order as avg() sums); NULL when
-- every value equals the median. Median and sigma are NULL when the window holds no value.
-- Why PL/Python: PostgreSQL has no rolling median, and a window array_agg with two percentile_cont sorts per bar
-- cost ~125 us per bar, 94 % of a 1-minute backfill's ingest time (docs/benchmarks.md); numpy sorts the full
-- windows of thousands of bars in one call. Windows that are partial or hold a NULL go through the same rule value
-- by value (the first win bars of a series, a gap), and so does a call for at most 64 bars (a live round), without
-- numpy. Only these four come back: PL/Python turns each returned
-- number into text and parses it (measured ~0.6 us per value), so the window counts are counted by the caller.
CREATE OR REPLACE FUNCTION internal.window_stats(
  r double precision[], g double precision[], v double precision[], from_pos integer, win integer,
  OUT r_med double precision[], OUT r_sigma double precision[], OUT g_med double precision[],
  OUT v_med double precision[])
LANGUAGE plpython3u
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $py$
n = len(r)
if len(g) != n or len(v) != n or win is None or win < 1 or from_pos is None or from_pos < 1:
    plpy.error("internal.window_stats: r, g and v must be of one length, win and from_pos at least 1",
               sqlstate="22023")
start = from_pos - 1
rows = max(n - start, 0)
half = win // 2


def median_sorted(s):
    # percentile_cont(0.5) over sorted values: PostgreSQL's float8_lerp(lo, hi, 0.5) = lo + 0.5 * (hi - lo)
    k = len(s)
    if k % 2:
        return s[k // 2]
    lo, hi = s[k // 2 - 1], s[k // 2]
    return lo + 0.5 * (hi - lo)


def sigma_of(vals, med):
    dev = sorted(abs(x - med) for x in vals)
    mad = median_sorted(dev)
    if mad > 0:
        return 1.4826 * mad
    mean_ad = sum(abs(x - med) for x in vals) / len(vals)  # in order, as avg() sums
    return 1.2533 * mean_ad if mean_ad > 0 else None


def full_median(s):
    # s: rows of win values, each sorted (numpy's sort of short rows is SIMD: measured 8x faster than a partition)
    if win % 2:
        return s[:, half]
    return s[:, half - 1] + 0.5 * (s[:, half] - s[:, half - 1])


def one(values, i, with_sigma):
    # bar i (0-based) value by value: its window's values, median and (with_sigma) sigma
    vals = [e for e in values[max(0, i - win):i] if e is not None and e == e]
    if not vals:
        return None, None
    m = median_sorted(sorted(vals))
    return m, (sigma_of(vals, m) if with_sigma else None)


def small(values, with_sigma):
    # a few bars (a live round): without numpy (importing it costs a backend ~80 ms, once)
    res = [one(values, i, with_sigma) for i in range(start, n)]
    return [m for m, _ in res], [s for _, s in res]


def stats(values, with_sigma):
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.array(values, dtype=float)  # NULL -> NaN: both are "no value"
    bad = np.isnan(x)
    nbad = np.concatenate(([0], np.cumsum(bad)))
    med = np.full(rows, np.nan)
    sig = np.full(rows, np.nan)
    pos = np.arange(start, n)  # 0-based bar positions scored
    full = (pos >= win)
    full[full] = (nbad[pos[full]] - nbad[pos[full] - win]) == 0
    if full.any():  # (a full window needs win bars before it, so n > win here)
        windows = sliding_window_view(x, win)  # windows[j] = x[j : j + win], the window of bar j + win
        idx = pos[full] - win
        out = np.flatnonzero(full)
        for c in range(0, len(idx), 8192):
            w = windows[idx[c:c + 8192]]
            m = full_median(np.sort(w, axis=1))
            o = out[c:c + 8192]
            med[o] = m
            if with_sigma:
                mad = full_median(np.sort(np.abs(w - m[:, None]), axis=1))
                s = 1.4826 * mad
                for j in np.flatnonzero(~(mad > 0)):  # MAD = 0: the mean absolute deviation, in time order
                    s[j] = np.nan if (sg := sigma_of(w[j].tolist(), float(m[j]))) is None else sg
                sig[o] = s
    for j in np.flatnonzero(~full):  # partial windows, windows holding a NULL or NaN
        m, sg = one(values, start + j, with_sigma)
        med[j] = np.nan if m is None else m
        sig[j] = np.nan if sg is None else sg
    return [None if e != e else e for e in med.tolist()], [None if e != e else e for e in sig.tolist()]


calc = small if rows <= 64 else stats
rm, rs = calc(r, True)
gm, _ = calc(g, False)
vm, _ = calc(v, False)
return {"r_med": rm, "r_sigma": rs, "g_med": gm, "v_med": vm}
$py$;
COMMENT ON FUNCTION internal.window_stats IS
  'Robust statistics of the win bars before each bar from_pos.. of one series (NULL/NaN ignored): median and sigma of r (1.4826 x MAD, else 1.2533 x mean absolute deviation, else NULL); median of g; median of v.';
REVOKE ALL ON FUNCTION internal.window_stats(double precision[], double precision[], double precision[], integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION internal.window_stats(double precision[], double precision[], double precision[], integer, integer) TO pgtrade_owner;

INSERT INTO ops.superuser_objects (object, reason) VALUES
  ('function internal.window_stats(double precision[],double precision[],double precision[],integer,integer)',
   'PL/Python (plpython3u, untrusted): rolling robust statistics of a series with numpy (anomaly detection)')
ON CONFLICT (object) DO UPDATE SET reason = excluded.reason, exposed_reason = excluded.exposed_reason;
