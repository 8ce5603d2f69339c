"""tracking/runs.py: a job's MLflow run ends FINISHED, FAILED or KILLED as the job did."""

from __future__ import annotations

import mlflow
import pytest

from textsweep import tracking
from textsweep.config import parse_config


def test_job_run_ends_finished_failed_or_killed(tmp_path, monkeypatch, use_own_store):
    use_own_store(monkeypatch, tmp_path)
    client = tracking.connect()
    config = parse_config({"name": "jobs"})
    with tracking.job_run(client, config, kind="train") as finished:
        pass
    with pytest.raises(ValueError), tracking.job_run(client, config, kind="train") as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), tracking.job_run(client, config, kind="train") as killed:
        raise KeyboardInterrupt
    statuses = [client.get_run(r.info.run_id).info.status for r in (finished, failed, killed)]
    assert statuses == ["FINISHED", "FAILED", "KILLED"]
    assert client.get_run(finished.info.run_id).data.tags["textsweep.kind"] == "train"
    assert mlflow.active_run() is None

