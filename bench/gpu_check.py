"""One command for a GPU host: which LSTM kernel textsweep's trials run on, how fast, and the tracking.

Prints a table and then one JSON line (also written to `--json FILE`):
- the device: GPUs, TensorFlow / Keras, the CUDA and cuDNN TensorFlow was built with;
- arms, each a fresh process training seed A's default model (bench data: benchdata.data_source())
  with `model.fit_model`, the path every trial takes: a warm-up epoch, then timed epochs, as
  training samples/s (validation included):
  | arm | recurrent_dropout | where |
  | cudnn | 0 | GPU, `use_cudnn="auto"` as textsweep builds it |
  | step-loop | 0 | GPU, `use_cudnn=False` (Keras' step loop) |
  | cpu | 0 | CPU (`CUDA_VISIBLE_DEVICES=""`) |
  | cudnn-rd0.2 / cpu-rd0.2 | 0.2 | seed A's own value, which rules cuDNN out |
  Each arm reports the kernel it *ran* (`cudnn` when Keras' cuDNN op was built into its graph,
  observed by wrapping Keras' `_cudnn_lstm`), beside the `lstm_kernel` textsweep logs for it;
- a tiny tracked sweep with `--workers` = the GPU count (a fresh SQLite store in a scratch
  folder): its trials, the GPU each ran on (`textsweep.gpu` tag), their kernels, and whether
  MLflow's GPU system metrics (`system/gpu_*`, needs `nvidia-ml-py`: the `gpu` extra) were logged.
Without a GPU it says so and exits 0 after the CPU arms. `--smoke` shrinks everything to seconds
on a CPU, trains the arms of one device (GPU or CPU) in one process, and also runs the sweep part
there in one process (the test suite runs it).

    python bench/gpu_check.py                 # on a GPU host: a few minutes
    python bench/gpu_check.py --json gpu.json
    python bench/gpu_check.py --smoke         # seconds, any machine (tests/e2e/test_bench_smoke.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchdata import data_source, seed_a_config  # noqa: E402

BENCH = Path(__file__).resolve().parent
ARMS = {  # name: (recurrent_dropout, use_cudnn, on the GPU)
    "cudnn": (0.0, "auto", True),
    "step-loop": (0.0, False, True),
    "cpu": (0.0, "auto", False),
    "cudnn-rd0.2": (0.2, "auto", True),
    "cpu-rd0.2": (0.2, "auto", False),
}


# ---------------------------------------------------------------- one arm, in its own process


def run_arm(name: str, smoke: bool, limit: int, epochs: int) -> dict:
    """Train seed A's default model for this arm, timed; what kernel it ran; GPU memory held."""
    import importlib

    keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")  # Keras' cuDNN branch (no public name)
    cudnn_graphs = []
    original = keras_tf_rnn._cudnn_lstm

    def observed_cudnn_lstm(*args, **kwargs):
        result = original(*args, **kwargs)  # raises where cuDNN cannot run: then nothing is recorded
        cudnn_graphs.append(True)
        return result

    keras_tf_rnn._cudnn_lstm = observed_cudnn_lstm

    from textsweep.api import prepare_data
    from textsweep.model import build_model, fit_model, lstm_kernel

    recurrent_dropout, use_cudnn, _ = ARMS[name]
    config = seed_a_config("gpu-check", smoke=smoke, imdb_limit=limit, limit=limit, recurrent_dropout=recurrent_dropout)
    params = config.defaults
    _, encoded = prepare_data(config)
    model = build_model(params, len(encoded.classes), use_cudnn=use_cudnn)
    fit_model(model, params, encoded, epochs=1)  # warm-up: tracing, cuDNN autotuning
    started = time.perf_counter()
    fit_model(model, params, encoded, epochs=epochs)
    seconds = time.perf_counter() - started
    ran = "cudnn" if cudnn_graphs else ("generic" if params.recurrent_dropout > 0 else "fused")
    return {
        "arm": name, "recurrent_dropout": recurrent_dropout, "use_cudnn": use_cudnn,
        "device": gpu_description() or "CPU", "kernel_ran": ran, "lstm_kernel_logged": lstm_kernel(params),
        "samples_per_s": round(len(encoded.train) * epochs / seconds, 1), "epoch_s": round(seconds / epochs, 2),
        "train_rows": len(encoded.train), "gpu_memory_mib": process_gpu_memory_mib(),
    }


def gpu_description() -> str | None:
    from textsweep.devices import gpu_in_use

    return gpu_in_use()


def process_gpu_memory_mib() -> float | None:
    """What this process holds on its GPU per NVML (memory growth: far below the card's size)."""
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        held = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            held += sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                        if p.pid == os.getpid())
        return round(held / 2**20, 1)
    finally:
        pynvml.nvmlShutdown()


def arms_in_subprocess(names: list[str], args: argparse.Namespace) -> list[dict]:
    """The arms `names`, all on the GPU or all on the CPU, one after another in a fresh process."""
    env = dict(os.environ)
    if not ARMS[names[0]][2]:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a real CPU arm: TensorFlow sees no GPU at all
    command = [sys.executable, str(Path(__file__).resolve()), "--arm", *names, "--limit", str(args.limit),
               "--epochs", str(args.epochs)] + (["--smoke"] if args.smoke else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
        return [{"arm": name, "error": error} for name in names]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the device and the tracked sweep


def device_facts() -> dict:
    import keras
    import tensorflow as tf

    from textsweep.devices import MEMORY_GROWTH_VARIABLE, gpu_names

    build = tf.sysconfig.get_build_info()
    return {
        "gpus": list(gpu_names()), "tensorflow": tf.__version__, "keras": keras.__version__,
        "cuda_build": build.get("cuda_version"), "cudnn_build": build.get("cudnn_version"),
        MEMORY_GROWTH_VARIABLE: os.environ.get(MEMORY_GROWTH_VARIABLE),
    }


def tracked_sweep(workers: int, smoke: bool) -> dict:
    """A tiny sweep with `workers` local workers (0: one process) in a scratch store; what MLflow holds."""
    import yaml

    workdir = Path(tempfile.mkdtemp(prefix="textsweep-gpu-check-"))
    source = data_source()
    trials = 2 if smoke else max(2, 2 * workers)
    config = {
        "name": "gpu-check-sweep",
        "data": {"source": source, "limit": 400 if smoke else 3000},
        "defaults": {"max_features": 300 if smoke else 2000, "embed_dim": 8 if smoke else 64,
                     "lstm_out": 8 if smoke else 64, "recurrent_dropout": 0.0, "epochs": 1, "batch_size": 64}
                    | ({"maxlen": 100} if source == "imdb" else {}),
        "search": {"algorithm": "random", "max_trials": trials, "reference": False,
                   "space": {"lstm_out": {"values": [8, 16] if smoke else [32, 64, 128]}}},
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(config))
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    # One system-metrics sample a second, so that even a short trial logs some.
    env = os.environ | {"MLFLOW_TRACKING_URI": store, "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, "-m", "textsweep.cli", "sweep", "--config", "sweep.yaml", "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command + (["--workers", str(workers)] if workers else []), cwd=workdir, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"workers": workers, "error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("gpu-check-sweep")
    runs = client.search_runs([experiment.experiment_id], "tags.`textsweep.kind` = 'trial'")
    gpu_metrics = sorted({key for run in runs for key in run.data.metrics if key.startswith("system/gpu")})
    return {
        "workers": workers, "seconds": round(seconds, 1),
        "trials_finished": sum(run.info.status == "FINISHED" for run in runs),
        "gpus_used": sorted({run.data.tags.get("textsweep.gpu", "?") for run in runs}),
        "kernels": sorted({run.data.params.get("lstm_kernel", "?") for run in runs}),
        "system_metrics_logged": any(key.startswith("system/") for run in runs for key in run.data.metrics),
        "gpu_system_metrics": gpu_metrics[:6], "gpu_system_metrics_logged": bool(gpu_metrics),
    }


# ---------------------------------------------------------------- report


def print_table(report: dict) -> None:
    facts = report["device"]
    print(f"device: {', '.join(facts['gpus']) or 'no GPU'} | TensorFlow {facts['tensorflow']} (CUDA "
          f"{facts['cuda_build']}, cuDNN {facts['cudnn_build']}) | Keras {facts['keras']} | "
          f"TF_FORCE_GPU_ALLOW_GROWTH={facts['TF_FORCE_GPU_ALLOW_GROWTH']}")
    print(f"{'arm':<12} {'rec.drop':>8} {'device':<28} {'kernel ran':<10} {'logged':<8} {'samples/s':>10} {'GPU MiB':>8}")
    for arm in report["arms"]:
        if "error" in arm:
            print(f"{arm['arm']:<12} error: {arm['error']}")
            continue
        print(f"{arm['arm']:<12} {arm['recurrent_dropout']:>8} {arm['device'][:28]:<28} {arm['kernel_ran']:<10} "
              f"{arm['lstm_kernel_logged']:<8} {arm['samples_per_s']:>10} {arm['gpu_memory_mib'] or '-':>8}")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio}")
    if report.get("sweep"):
        print(f"tracked sweep: {report['sweep']}")
    if report.get("note"):
        print(report["note"])


def ratios(arms: list[dict]) -> dict:
    speed = {arm["arm"]: arm["samples_per_s"] for arm in arms if "samples_per_s" in arm}
    pairs = {"cudnn / step-loop": ("cudnn", "step-loop"), "cudnn / cpu": ("cudnn", "cpu"),
             "cudnn-rd0.2 / cpu-rd0.2": ("cudnn-rd0.2", "cpu-rd0.2"), "cudnn / cudnn-rd0.2": ("cudnn", "cudnn-rd0.2")}
    return {name: round(speed[a] / speed[b], 2) for name, (a, b) in pairs.items() if a in speed and b in speed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds on any machine (CI)")
    parser.add_argument("--limit", type=int, default=6000, help="rows of the bench data (default 6000)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per arm (default 2)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--arm", nargs="+", choices=sorted(ARMS), help=argparse.SUPPRESS)  # arms, in this process
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.epochs = 400, 1
    if args.arm:
        print(json.dumps([run_arm(name, args.smoke, args.limit, args.epochs) for name in args.arm]))
        return 0

    report = {"device": device_facts(), "arms": [], "ratios": {}, "sweep": None, "note": ""}
    gpus = len(report["device"]["gpus"])
    names = [name for name, (_, _, on_gpu) in ARMS.items() if gpus or not on_gpu]
    # Each arm in a fresh process, so that its timing and GPU memory are its own; --smoke only checks
    # that the bench runs, so there one process trains the arms of each device (a process start
    # costs more than a smoke arm).
    on_gpu = [name for name in names if ARMS[name][2]]
    groups = [on_gpu, [name for name in names if name not in on_gpu]] if args.smoke else [[name] for name in names]
    report["arms"] = [arm for group in groups if group for arm in arms_in_subprocess(group, args)]
    report["ratios"] = ratios(report["arms"])
    if gpus or args.smoke:
        report["sweep"] = tracked_sweep(gpus, args.smoke)
    if not gpus:
        report["note"] = "no GPU on this machine: the GPU arms and (outside --smoke) the tracked sweep were not run"
    print_table(report)
    line = json.dumps(report)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    failed = [arm["arm"] for arm in report["arms"] if "error" in arm] + (["sweep"] if (report["sweep"] or {}).get("error") else [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
