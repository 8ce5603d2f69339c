"""Each bench script runs in `--smoke` mode and ends with its ratio (the line CI and readers look at).

Each script runs in a process of its own, as `python bench/<script>.py --smoke` runs it: as
`__main__`, with its arguments, the bench folder first on sys.path, its own working and temporary
directory, stdout, stderr and exit status. The processes are forked from one that has imported
TensorFlow, Keras, KerasTuner, MLflow and textsweep and done nothing else (this file, run as a
script): a script then skips the ~6 s a fresh interpreter spends on those imports, and shares no
state with another script (the parent runs no TensorFlow op and opens no store).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

pytestmark = pytest.mark.e2e  # each runs a bench script end to end: tens of seconds

BENCHES = ["tracking_overhead", "throughput_vs_seed", "search_efficiency", "data_prep_share", "memory_growth", "subword_vs_word"]
RATIO_LINE = re.compile(r"ratio.*?(\d+\.\d+)\s*$")
SCRIPT_TIMEOUT_S = 300  # a script still running then is killed (SIGALRM) and its test fails


@pytest.fixture(scope="module")
def run_bench(project_root, tmp_path_factory):
    """`run_bench(name, *arguments, cwd=folder)`: `python bench/<name>.py ARGUMENTS` run from `folder`
    (also its TMPDIR: the benches' temporary stores land there), in a process forked from this
    module's fork server; returns it as a `subprocess.CompletedProcess`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    home = tmp_path_factory.mktemp("bench-fork-server")
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(home)}
    with (home / "stderr").open("w") as server_stderr:
        server = subprocess.Popen([sys.executable, __file__], cwd=home, env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_stderr)

    def run(name: str, *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
        server.stdin.write(json.dumps([str(project_root / "bench" / f"{name}.py"), str(cwd), *arguments]) + "\n")
        server.stdin.flush()
        exit_status = server.stdout.readline()
        assert exit_status, f"the fork server ended: {(home / 'stderr').read_text()[-4000:]}"
        return subprocess.CompletedProcess([f"bench/{name}.py", *arguments], int(exit_status),
                                           (cwd / "stdout").read_text(), (cwd / "stderr").read_text())

    yield run
    server.stdin.close()
    server.wait(timeout=60)


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke_ends_with_its_ratio(bench, tmp_path, run_bench):
    result = run_bench(bench, "--smoke", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    match = RATIO_LINE.search(last)
    assert match, f"last line of {bench} --smoke has no ratio: {last!r}"
    assert float(match.group(1)) > 0


def test_gpu_check_smoke_reports_the_kernel_each_arm_ran_and_says_there_is_no_gpu(tmp_path, run_bench):
    """`bench/gpu_check.py` unchanged on a CPU: the CPU arms, the tracked sweep, the JSON report."""
    result = run_bench("gpu_check", "--smoke", "--json", "gpu.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "gpu.json").read_text())
    assert report["device"]["gpus"] == [] and "no GPU on this machine" in result.stdout
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert sorted(arms) == ["cpu", "cpu-rd0.2"]  # no GPU arm without a GPU
    assert (arms["cpu"]["kernel_ran"], arms["cpu-rd0.2"]["kernel_ran"]) == ("fused", "generic")
    assert all(arm["kernel_ran"] == arm["lstm_kernel_logged"] and arm["samples_per_s"] > 0 for arm in arms.values())
    sweep = report["sweep"]
    assert sweep["trials_finished"] == 2 and sweep["gpus_used"] == ["none"] and sweep["kernels"] == ["fused"]
    assert sweep["system_metrics_logged"] and not sweep["gpu_system_metrics_logged"]


# ---------------------------------------------------------------- the fork server (this file as a script)

# What the bench scripts import (TensorFlow, Keras, KerasTuner, MLflow, scikit-learn come with these),
# and MLflow's SQL store, which MLflow imports when a tracked bench opens its store.
IMPORTED_BEFORE_FORKING = ("tensorflow", "keras_tuner", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
                           "textsweep.api", "textsweep.search", "textsweep.serving", "textsweep.tracking")


def serve_forks() -> None:
    """Import what the bench scripts import, once; then for each request on stdin, a JSON list
    `[script, working directory, *arguments]`, run the script in a forked process and answer its
    exit status (negative: the signal that ended it), one line each."""
    for module in IMPORTED_BEFORE_FORKING:
        importlib.import_module(module)
    for request in sys.stdin:
        script, workdir, *arguments = json.loads(request)
        pid = os.fork()
        if pid == 0:
            run_as_main(Path(script), arguments, Path(workdir))
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    os._exit(0)  # nothing of this process to clean up (its forks did the work); TensorFlow's teardown takes seconds


def run_as_main(script: Path, arguments: list[str], workdir: Path) -> NoReturn:
    """In the forked process: what `python SCRIPT ARGUMENTS` does from `workdir`, stdout and stderr
    to files there; the process ends as that command would (an exception's traceback and status 1,
    the script's own sys.exit, at-exit clean-up)."""
    signal.alarm(SCRIPT_TIMEOUT_S)
    os.chdir(workdir)
    os.environ["TMPDIR"] = str(workdir)
    tempfile.tempdir = None  # read TMPDIR again
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),  # not the server's requests
                            (1, workdir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, workdir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [str(script), *arguments]
    sys.path[0] = str(script.parent)
    runpy.run_path(str(script), run_name="__main__")
    sys.exit(0)


if __name__ == "__main__":
    serve_forks()
