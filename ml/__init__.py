"""pgtrade's models: scikit-learn estimators for bar direction and pattern anomalies, exported to ONNX.

The same modules run in two places: in a client (tests, benchmarks) and inside the database server, where
``pgtrade db migrate`` copies them into ``internal.python_modules`` and a PL/Python importer loads them
(db/superuser/2_3_ml_training.sql), so that training needs no process outside the database. They therefore import
nothing of the project outside ``ml`` and take their rows from the caller: features and labels always come from SQL
(``ml.training_rows``, over ``ml.features`` and ``ml.labels``), never from a second copy in Python.
"""

from .models import KINDS, TASKS, make_estimator

__all__ = ["KINDS", "TASKS", "make_estimator"]
