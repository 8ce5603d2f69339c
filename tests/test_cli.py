"""The `textsweep` command: a user's mistake is one clear line, exit 2, no traceback and no run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_cli_errors_are_one_clear_line_and_leave_no_run(store, reviews_csv, write_sweep_file, run_textsweep, client_of):
    bad_data = write_sweep_file(store / "bad.yaml", name="bad", source=str(store / "missing.csv"))
    result = run_textsweep(["train", "--config", str(bad_data)], store)
    assert result.returncode == 2
    assert "data file" in result.stderr and "not found" in result.stderr and "Traceback" not in result.stderr
    typo = store / "typo.yaml"
    typo.write_text("name: x\nsearch:\n  max_trails: 3\n")
    result = run_textsweep(["sweep", "--config", str(typo)], store)
    assert result.returncode == 2 and "did you mean 'max_trials'?" in result.stderr and "Traceback" not in result.stderr
    result = run_textsweep(["sweep", "--config", str(store / "absent.yaml")], store)
    assert result.returncode == 2 and "absent.yaml' not found" in result.stderr
    unreachable = run_textsweep(["train", "--config", str(write_sweep_file(store / "ok.yaml", name="ok", source=str(reviews_csv)))],
                                store, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "unreachable" in unreachable.stderr and "Traceback" not in unreachable.stderr
    if (store / "mlruns" / "mlflow.db").exists():
        client = client_of(store)
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_every_bad_input_is_one_message_a_non_zero_exit_and_no_run(store, write_sweep_file, run_textsweep, client_of):
    """Bad sweep files and bad data, written outside the repo: a specific message, exit 2, no traceback, no run."""
    files = {
        "latin.csv": "text,label\ncaf\xe9 tr\xe8s bon,1\n".encode("latin-1"),
        "empty.csv": b"",
        "header_only.csv": b"text,label\n",
        "no_label.csv": b"text,stars\ngood,5\nbad,1\n",
        "tiny_class.csv": b"text,label\n" + b"".join(f"text {i},{'a' if i else 'b'}\n".encode() for i in range(30)),
        "one_class.csv": b"text,label\n" + b"".join(f"text {i},1\n".encode() for i in range(30)),
    }
    for name, content in files.items():
        (store / name).write_bytes(content)
    (store / "a_folder").mkdir()
    cases = {
        "latin.csv": "is not valid utf-8",
        "empty.csv": "is empty",
        "header_only.csv": "has no rows",
        "no_label.csv": "label column 'label' not found",
        "tiny_class.csv": "class 'b' has 1 row",
        "one_class.csv": "only one class",
        "a_folder": "is a directory, not a file",
    }
    for data_file, expected in cases.items():
        config = write_sweep_file(store / f"{data_file}.yaml", name="bad-input", source=str(store / data_file))
        result = run_textsweep(["sweep", "--config", str(config), "--quiet"], store)
        assert result.returncode == 2, (data_file, result.stderr[-2000:])
        assert expected in result.stderr and "Traceback" not in result.stderr, (data_file, result.stderr[-2000:])
    bad_files = {
        "min > max": ("search:\n  space:\n    embed_dim: {min: 64, max: 8}\n", "min (64) is greater than max (8)"),
        "dropout": ("defaults:\n  dropout: 1.0\n", "defaults.dropout"),
        "max_trials": ("search:\n  max_trials: 0\n", "search.max_trials"),
        "batch_size": ("defaults:\n  batch_size: 0\n", "defaults.batch_size"),
        "algorithm": ("search:\n  algorithm: annealing\n", "search.algorithm"),
        "unknown key": ("defualts:\n  epochs: 1\n", "did you mean 'defaults'?"),
    }
    for case, (body, expected) in bad_files.items():
        path = store / f"bad-{case.replace(' ', '_')}.yaml"
        path.write_text("name: bad-file\n" + body)
        result = run_textsweep(["sweep", "--config", str(path)], store)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr, (case, result.stderr)
        assert str(path) in result.stderr  # the message names the file
    client = client_of(store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
