"""docs/quickstart.ipynb executes top to bottom in a real Jupyter kernel, so the documented notebook can't rot."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e


def test_the_quickstart_notebook_runs_in_a_real_kernel(tmp_path, monkeypatch, project_root):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(project_root / "docs" / "quickstart.ipynb", as_version=4)
    # Every cell has run and answered when execute() returns; a graceful shutdown would then wait
    # seconds for the kernel (TensorFlow and MLflow loaded) to exit before killing it anyway.
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   shutdown_kernel="immediate").execute()

    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    text = {i: "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in out) for i, out in outputs.items()}
    assert all(o.output_type != "error" for out in outputs.values() for o in out)
    leaderboard, predictions, summary = text[3], text[6], text[8]
    assert "trial_id" in leaderboard and "best_val_accuracy" in leaderboard
    assert "A wonderful, moving film." in predictions and "probability" in predictions
    assert "registered" in summary.lower() and "notebook-sentiment" in summary

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("notebook-quickstart")
    trials = client.search_runs([experiment.experiment_id], "tags.`textsweep.kind` = 'trial' and attributes.status = 'FINISHED'")
    assert len(trials) == 3
    # The champion is the candidate promote chose on validation: the best trial, the reference or their blend
    champion = client.get_model_version_by_alias("notebook-sentiment", "champion")
    kinds = {run.info.run_id: run.data.tags.get("textsweep.kind") for run in client.search_runs([experiment.experiment_id])}
    assert {"trial": "lstm", "reference": "reference", "blend": "blend"}[kinds[champion.run_id]] == champion.tags["textsweep.candidate"]
