"""Each bench script runs in `--smoke` mode and ends with its ratio (the line CI and readers look at)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

BENCHES = ["tracking_overhead", "throughput_vs_seed", "search_efficiency", "data_prep_share", "memory_growth", "subword_vs_word"]
RATIO_LINE = re.compile(r"ratio.*?(\d+\.\d+)\s*$")


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke_ends_with_its_ratio(bench, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KERASTUNER_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path)}  # the benches' temporary stores land here
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / f"{bench}.py"), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    last = result.stdout.strip().splitlines()[-1]
    match = RATIO_LINE.search(last)
    assert match, f"last line of {bench} --smoke has no ratio: {last!r}"
    assert float(match.group(1)) > 0
