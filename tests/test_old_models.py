"""A model registered before the redesign (issue 21) loads and answers as it did.

tests/fixtures/model_8c377fd.tar.gz is the served pyfunc model exactly as commit 8c377fd logged it
(tests/fixtures/make_old_model.py made it with that commit's code), model_8c377fd.json the texts
and what that code answered. The model carries its own textsweep package (code_paths) and runs its
own serving.py (a model from code), which imports textsweep modules by their old names.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_NAME = "registered-by-8c377fd"

# In a fresh process, as `mlflow models serve` loads it: nothing of textsweep is imported yet, so
# the model's serving.py imports the textsweep package it carries.
LOAD_AND_PREDICT = """
import json, sys
import mlflow, pandas as pd
answer = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({"text": json.loads(sys.argv[2])}))
print(json.dumps({"textsweep": sys.modules["textsweep"].__file__} | {column: answer[column].tolist() for column in answer}))
"""


@pytest.fixture
def old_model(store, monkeypatch) -> dict:
    """The fixture unpacked, logged as a run's artifacts and registered (version 1) in a fresh store."""
    record = json.loads((FIXTURES / "model_8c377fd.json").read_text(encoding="utf-8"))
    with tarfile.open(FIXTURES / "model_8c377fd.tar.gz") as archive:
        archive.extractall(store / "unpacked", filter="data")
    uri = f"sqlite:///{store / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # an earlier test may have set MLflow's process-wide URI, which wins over the variable
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(store / "unpacked" / record["model_directory"]), artifact_path="classifier")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/classifier", MODEL_NAME)
    assert str(version.version) == "1"
    return record


def assert_answers_as_before(answer: dict[str, list], expected: dict[str, list]) -> None:
    assert list(answer) == list(expected)  # label, probability, probability_<class> for each class
    assert answer["label"] == expected["label"]
    for column in expected.keys() - {"label"}:
        np.testing.assert_allclose(answer[column], expected[column], rtol=1e-6, err_msg=column)


def test_an_old_model_answers_as_before_in_a_process_that_imported_todays_textsweep(old_model):
    import textsweep

    model = textsweep.load_model(f"models:/{MODEL_NAME}/1")
    answer = model.predict(old_model["texts"])
    assert answer["text"].tolist() == old_model["texts"]
    answer = answer.drop(columns="text")
    assert_answers_as_before({column: answer[column].tolist() for column in answer}, old_model["answers"])
    # The model's old serving.py ran on today's modules (imported first), reached by their old names.
    assert "code" not in Path(sys.modules["textsweep"].__file__).parts
    assert {"textsweep.vocab", "textsweep.layers", "textsweep.data"} <= sys.modules.keys()


def test_an_old_model_answers_as_before_in_a_fresh_process(old_model):
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, f"models:/{MODEL_NAME}/1", json.dumps(old_model["texts"])],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert "code" in Path(answer.pop("textsweep")).parts  # the package the model carries, not this checkout's
    assert_answers_as_before(answer, old_model["answers"])
    assert pd.Series(answer["label"]).isin(["negative", "positive"]).all()
