"""Each bench script runs in `--smoke` mode and ends with its ratio (the line CI and readers look at)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

BENCHES = ["tracking_overhead", "throughput_vs_seed", "search_efficiency", "data_prep_share", "memory_growth", "subword_vs_word"]
RATIO_LINE = re.compile(r"ratio.*?(\d+\.\d+)\s*$")


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke_ends_with_its_ratio(bench, tmp_path, project_root):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path)}  # the benches' temporary stores land here
    result = subprocess.run(
        [sys.executable, str(project_root / "bench" / f"{bench}.py"), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    match = RATIO_LINE.search(last)
    assert match, f"last line of {bench} --smoke has no ratio: {last!r}"
    assert float(match.group(1)) > 0


def test_gpu_check_smoke_reports_the_kernel_each_arm_ran_and_says_there_is_no_gpu(tmp_path, project_root):
    """`bench/gpu_check.py` unchanged on a CPU: the CPU arms, the tracked sweep, the JSON report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(project_root / "bench" / "gpu_check.py"), "--smoke", "--json", "gpu.json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
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
