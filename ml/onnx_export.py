"""Export a fitted estimator to ONNX (skl2onnx): one float input named ``x`` of n_features columns; classifiers
without the ZipMap (probabilities come out as a plain [n, 2] tensor the database reads column 1 of)."""

from __future__ import annotations

#: opsets every onnxruntime the project supports runs
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def to_onnx(estimator, n_features: int) -> tuple[bytes, str]:
    """The ONNX bytes and the name of the output the database scores (``probabilities`` of a classifier,
    ``scores`` of an outlier model: IsolationForest's decision_function)."""
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "predict_proba") else None
    onx = convert(
        estimator,
        initial_types=[("x", FloatTensorType([None, n_features]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
    outputs = [o.name for o in onx.graph.output]
    name = "probabilities" if "probabilities" in outputs else "scores" if "scores" in outputs else outputs[-1]
    return onx.SerializeToString(), name
