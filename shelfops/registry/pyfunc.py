"""Each registered version is also an MLflow model: the ``python_function`` flavour.

A user who knows MLflow and not shelfops can load a version with
``mlflow.pyfunc.load_model("models:/NAME@production")`` or answer predictions with
``mlflow models serve -m models:/NAME@production``. The model is logged *from code*
(``shelfops/registry/pyfunc_entry.py`` is copied in and run at load time), so nothing is
pickled: the weights stay the shipped safetensors / ONNX files of the stage folder, stored as
the model's one artifact (``artifacts/shelfops``) and verified against their manifest when
loaded. One column layout per task, written into the signature:

==========  =========================  ==========================================
task        input columns              output columns
==========  =========================  ==========================================
search      query, title (string)      score (double): relevance of title to query
retrieval   text (string)              embedding (array of double)
classify    text (string)              label (string), score (double)
recommend   history (array of string)  items (array of string): the next 10 items
==========  =========================  ==========================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from shelfops.artifacts import verify_outputs
from shelfops.errors import ModelError
from shelfops.optimize.shipped import load_shipped
from shelfops.registry.registry import MODEL_ARTIFACT as ARTIFACT
from shelfops.train.recommend import Recommender

ENTRY = Path(__file__).with_name("pyfunc_entry.py")
RECOMMEND_K = 10

_SIGNATURES = {
    "search": ([ColSpec(DataType.string, "query"), ColSpec(DataType.string, "title")],
               [ColSpec(DataType.double, "score")]),
    "retrieval": ([ColSpec(DataType.string, "text")], [ColSpec(Array(DataType.double), "embedding")]),
    "classify": ([ColSpec(DataType.string, "text")],
                 [ColSpec(DataType.string, "label"), ColSpec(DataType.double, "score")]),
    "recommend": ([ColSpec(Array(DataType.string), "history")], [ColSpec(Array(DataType.string), "items")]),
}


def signature(task: str) -> ModelSignature:
    if task not in _SIGNATURES:
        raise ModelError(f"no MLflow signature for task {task!r}; expected one of {sorted(_SIGNATURES)}")
    inputs, outputs = _SIGNATURES[task]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(task: str, folder: Path) -> pd.DataFrame:
    """A one-row example in the task's columns; a recommender's is two of its own items."""
    if task == "search":
        return pd.DataFrame({"query": ["cordless drill"], "title": ["18V cordless drill driver kit"]})
    if task == "recommend":
        items = pl.read_parquet(Path(folder) / "items.parquet", columns=["item_id"])["item_id"]
        return pd.DataFrame({"history": [[str(i) for i in items.head(2).to_list()]]})
    return pd.DataFrame({"text": ["cordless drill"]})


def save(folder: Path, task: str, dst: Path, *, requirement: str) -> Path:
    """Write ``folder`` as an MLflow model directory at ``dst`` (no model is loaded or run)."""
    mlflow.pyfunc.save_model(path=str(dst), python_model=str(ENTRY), artifacts={ARTIFACT: str(folder)},
                             signature=signature(task), input_example=input_example(task, folder),
                             pip_requirements=[requirement])
    return dst


def _column(df: pd.DataFrame, name: str) -> list[Any]:
    if name not in df.columns:
        raise ModelError(f"input has no column {name!r} (columns: {list(df.columns)})")
    return df[name].tolist()


class ShelfopsModel(PythonModel):
    """The shipped variant of one stage folder, answering a DataFrame of inputs."""

    def load_context(self, context: PythonModelContext) -> None:
        folder = Path(context.artifacts[ARTIFACT])
        m = verify_outputs(folder)  # checksums of every file, as the server's loader checks them
        self.task = str(m.extra.get("task") or json.loads((folder / "model.json").read_text())["task"])
        if self.task == "recommend":
            self.model = Recommender.load(folder)
        else:
            self.model = load_shipped(folder, verify=False).offline()

    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        df = pd.DataFrame(model_input)
        if self.task == "search":
            scores = self.model.run([str(q) for q in _column(df, "query")], [str(t) for t in _column(df, "title")])
            return pd.DataFrame({"score": np.asarray(scores, dtype=float).reshape(-1)})
        if self.task == "recommend":
            got = self.model.recommend_batch([[str(i) for i in h] for h in _column(df, "history")], k=RECOMMEND_K)
            return pd.DataFrame({"items": [[item for item, _ in row] for row in got]})
        out = self.model.run([str(t) for t in _column(df, "text")])
        if self.task == "retrieval":
            return pd.DataFrame({"embedding": [row.astype(float).tolist() for row in out]})
        z = np.exp(out - out.max(1, keepdims=True))
        p = z / z.sum(1, keepdims=True)
        labels = self.model.spec.labels
        return pd.DataFrame({"label": [str(labels[i]) for i in p.argmax(1)], "score": p.max(1).astype(float)})
