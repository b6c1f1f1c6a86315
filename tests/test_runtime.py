"""The database runtime: the server pgtrade starts loads its extensions, and PL/Python imports the project's own
Python packages (the postmaster starts with PYTHONPATH set to this environment's site-packages)."""

from __future__ import annotations

import sysconfig

import numpy
import onnxruntime
import sklearn

from pgtrade.cluster import plpython_path


def test_server_has_timescaledb_pg_cron_and_plpython_loaded(db):
    preload = db.execute("SHOW shared_preload_libraries").fetchone()[0]
    assert preload.split(",")[:2] == ["timescaledb", "pg_cron"]
    versions = dict(db.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    assert versions["timescaledb"] == "2.28.3"
    assert {"pg_cron", "plpython3u", "pgtap"} <= versions.keys()
    assert db.execute("SHOW timescaledb.telemetry_level").fetchone()[0] == "off"
    assert db.execute("SHOW TimeZone").fetchone()[0] == "UTC"


def test_plpython_imports_numpy_onnxruntime_and_scikit_learn_from_the_project_environment(db):
    db.execute("""
        CREATE FUNCTION pg_temp.py_versions() RETURNS text[] LANGUAGE plpython3u AS $$
            import numpy, onnxruntime, sklearn
            return [numpy.__version__, onnxruntime.__version__, sklearn.__version__, numpy.__file__]
        $$""")
    np_v, ort_v, skl_v, np_file = db.execute("SELECT pg_temp.py_versions()").fetchone()[0]
    # the very packages of this environment, not some other copy
    assert (np_v, ort_v, skl_v) == (numpy.__version__, onnxruntime.__version__, sklearn.__version__)
    assert np_file.startswith(sysconfig.get_paths()["purelib"]) or np_file.startswith(sysconfig.get_paths()["platlib"])
    assert sysconfig.get_paths()["purelib"] in plpython_path()


def test_onnxruntime_runs_a_model_inside_the_server(db):
    """An ONNX model (a scikit-learn regression exported with skl2onnx) scored by onnxruntime inside PL/Python."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = numpy.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]], dtype=numpy.float32)
    y = x @ numpy.array([2.0, -1.0], dtype=numpy.float32) + 0.5
    model = to_onnx(LinearRegression().fit(x, y), x[:1]).SerializeToString()
    db.execute("""
        CREATE FUNCTION pg_temp.score(model bytea, a float8, b float8) RETURNS float8 LANGUAGE plpython3u AS $$
            import numpy as np, onnxruntime as ort
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(bytes(model), opts, providers=["CPUExecutionProvider"])
            (out,) = sess.run(None, {sess.get_inputs()[0].name: np.array([[a, b]], dtype=np.float32)})
            return float(out.ravel()[0])
        $$""")
    got = db.execute("SELECT pg_temp.score(%s, 10, 4)", (model,)).fetchone()[0]
    assert abs(got - (2 * 10 - 4 + 0.5)) < 1e-4
