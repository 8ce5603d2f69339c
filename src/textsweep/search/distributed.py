"""Distributed sweeps on KerasTuner's own chief/worker mode, and the local worker launcher.

KerasTuner's variables decide the role: KERASTUNER_TUNER_ID (`chief`, `tuner0`, ...),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT. Workers get a gRPC `OracleClient` from
KerasTuner itself; the chief serves the oracle with KerasTuner's `OracleServicer` but its own
loop, because KerasTuner's `start_server` never stops its gRPC server (the chief process then
never exits) and waits forever for a worker that died.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras_tuner as kt
import pandas as pd
from keras_tuner.engine.trial import TrialStatus

# No public names for KerasTuner's gRPC messages and servicer. The chief serves them with its own
# loop because KerasTuner's `start_server` waits for every worker to end (keras-team/keras-tuner
# PR 967), and a dead worker stalls it for good (keras-team/keras-tuner issue 915).
from keras_tuner.src import protos
from keras_tuner.src.distribute.oracle_chief import OracleServicer

from textsweep import interrupts
from textsweep.config import SweepConfig
from textsweep.errors import ConfigError
from textsweep.events import TrialObserver, WorkerLost


def distributed_role() -> str | None:
    """`chief`, `worker`, or None for a single-process sweep."""
    # No public name: KerasTuner's own reading of its variables, the rule its tuners follow; a
    # reading of our own could disagree with the tuner about which process is the chief.
    from keras_tuner.src.distribute import utils as distribute_utils

    try:
        if not distribute_utils.has_chief_oracle():
            return None
    except RuntimeError as exc:  # KERASTUNER_ORACLE_IP set without the port or the tuner id
        raise ConfigError(f"distributed sweep: {exc}") from None
    return "chief" if distribute_utils.is_chief_oracle() else "worker"


def oracle_address() -> str:
    return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


class ChiefServicer(OracleServicer):
    """KerasTuner's servicer, remembering which workers were told the search is over, when each
    worker was last heard of, and which were given up (dead or silent)."""

    def __init__(self, oracle: Any):
        super().__init__(oracle)
        self.stopped_tuners: set[str] = set()
        self.lost_tuners: set[str] = set()
        self.last_heard: dict[str, float] = {}  # tuner id -> time.monotonic()
        self.peers: dict[str, str] = {}  # gRPC peer address -> tuner id

    def _sender(self, context: Any) -> str | None:
        return self.peers.get(context.peer()) if context is not None else None

    def CreateTrial(self, request: Any, context: Any) -> Any:
        if request.tuner_id in self.lost_tuners:  # given up on: its trial went to another worker
            trial = kt.engine.trial.Trial(self.oracle.get_space(), status=TrialStatus.STOPPED)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())
        if context is not None:
            self.peers[context.peer()] = request.tuner_id
        self.last_heard[request.tuner_id] = time.monotonic()
        trial = self.oracle.create_trial(request.tuner_id)
        if trial.status == TrialStatus.STOPPED and self._others_may_be_requeued(request.tuner_id):
            # The budget is handed out, but another worker's trial may still come back (it dies or
            # goes silent): keep this worker waiting for it instead of letting it leave.
            self.oracle.tuner_ids.add(request.tuner_id)
            time.sleep(1)
            trial = kt.engine.trial.Trial(self.oracle.get_space(), status=TrialStatus.IDLE)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())
        if trial.status == TrialStatus.STOPPED:
            self.stop_triggered = True
            self.stopped_tuners.add(request.tuner_id)
        return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

    def _others_may_be_requeued(self, tuner_id: str) -> bool:
        if getattr(self.oracle, "stopped_by_time", False):  # search.max_time: no trial may start
            return False
        return any(other != tuner_id and other not in self.lost_tuners for other in self.oracle.ongoing_trials)

    def GetTrial(self, request: Any, context: Any) -> Any:
        # Workers ask for their trial after every epoch (WorkerHeartbeat): that is the heartbeat.
        if (sender := self._sender(context)) is not None:
            self.last_heard[sender] = time.monotonic()
        return super().GetTrial(request, context)

    def UpdateTrial(self, request: Any, context: Any) -> Any:
        if self._sender(context) in self.lost_tuners:  # a worker back from the dead: its trial is another's now
            return protos.get_service().UpdateTrialResponse(trial=self.oracle.get_trial(request.trial_id).to_proto())
        return super().UpdateTrial(request, context)

    def EndTrial(self, request: Any, context: Any) -> Any:
        if self._sender(context) in self.lost_tuners:
            return protos.get_service().EndTrialResponse()
        return super().EndTrial(request, context)

    def silent_workers(self, timeout_s: float) -> list[str]:
        """Workers running a trial that have not been heard of for `timeout_s` (stopped, hung, cut off)."""
        now = time.monotonic()
        return [tuner_id for tuner_id in list(self.oracle.ongoing_trials)
                if tuner_id not in self.lost_tuners and now - self.last_heard.get(tuner_id, now) > timeout_s]

    def search_done(self) -> bool:
        if not self.stop_triggered or self.oracle.ongoing_trials:
            return False
        return not (set(self.oracle.tuner_ids) - self.stopped_tuners - self.lost_tuners)

    def requeue_trial_of(self, tuner_id: str, reason: str) -> str | None:
        """A worker died: hand its running trial to the next worker that asks."""
        self.lost_tuners.add(tuner_id)
        trial = self.oracle.ongoing_trials.get(tuner_id)
        if trial is None:
            return None
        trial.status = TrialStatus.INVALID
        trial.message = reason
        self.oracle.end_trial(trial)
        return trial.trial_id


class WorkerHeartbeat(TrialObserver):
    """A worker's observer: after every epoch, ask the chief for the trial, so the chief knows
    this worker is alive; a worker on another host that stops reporting loses its trial."""

    def __init__(self, oracle: Any):
        self.oracle = oracle  # the worker's gRPC client of the chief's oracle

    def epoch_ends(self, event: Any) -> None:
        self.oracle.get_trial(event.trial.trial_id)


def serve_oracle(tuner: kt.Tuner, poll: Callable[[Any], None] = lambda servicer: None) -> None:
    """Chief role: serve the oracle until the budget is spent and every live worker was stopped."""
    import grpc

    tuner.save()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = ChiefServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(oracle_address()) == 0:
        raise ConfigError(f"chief cannot listen on {oracle_address()}; set KERASTUNER_ORACLE_PORT to a free port")
    server.start()
    try:
        while not servicer.search_done():
            time.sleep(0.5)
            interrupts.raise_if_pending()  # the chief's safe point: Ctrl-C stops it and its workers
            poll(servicer)
    finally:
        server.stop(grace=5).wait()


def local_chief_environment() -> dict[str, str]:
    """KerasTuner's variables for a chief on loopback, on a free port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}


class WorkerPool:
    """`count` local workers running the same command, their lines relayed as one view.

    Each worker gets KerasTuner's variables with its own tuner id (`tuner0`, `tuner1`, ...) and,
    when GPUs exist, one GPU (`CUDA_VISIBLE_DEVICES`), round robin.
    """

    def __init__(self, *, config_path: Path, count: int, quiet: bool, stream: Any, extra_env: dict[str, str]):
        self.config_path, self.count, self.quiet = Path(config_path), count, quiet
        self.stream = stream or sys.stdout
        self.extra_env = extra_env
        self.processes: dict[str, Any] = {}
        self._reported: set[str] = set()
        self._relays: list[Any] = []

    def say(self, line: str) -> None:
        self.stream.write(f"[chief] {line}\n")
        self.stream.flush()

    def _environment(self, index: int, gpus: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "KERASTUNER_TUNER_ID")}
        env |= self.extra_env | {"KERASTUNER_TUNER_ID": f"tuner{index}"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        return env

    def __enter__(self) -> WorkerPool:
        import subprocess
        import threading

        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
        command = [sys.executable, "-m", "textsweep.cli", "sweep", "--config", str(self.config_path)]
        for index in range(self.count):
            tuner_id = f"tuner{index}"
            process = subprocess.Popen(
                command + (["--quiet"] if self.quiet else []), env=self._environment(index, gpus),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            )
            self.processes[tuner_id] = process
            relay = threading.Thread(target=self._relay, args=(tuner_id, process), daemon=True)
            relay.start()
            self._relays.append(relay)
        self.say(f"started {self.count} workers on oracle {oracle_address()}" + (f", {gpus} GPUs" if gpus else ""))
        return self

    def _relay(self, tuner_id: str, process: Any) -> None:
        for line in process.stdout:
            line = line.rstrip()
            # Workers' library chatter (TensorFlow start-up) stays out of the shared view.
            if line and not line.startswith(("I0000", "E0000", "W0000", "WARNING: All log messages")):
                self.stream.write(f"[{tuner_id}] {line}\n")
                self.stream.flush()

    def newly_dead(self) -> list[tuple[str, int]]:
        dead = []
        for tuner_id, process in self.processes.items():
            code = process.poll()
            if code not in (None, 0) and tuner_id not in self._reported:
                self._reported.add(tuner_id)
                dead.append((tuner_id, code))
        return dead

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        import signal
        import subprocess

        if exc_type is not None:  # Ctrl-C or an error in the chief: stop every worker
            for process in self.processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
        for tuner_id, process in self.processes.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for relay in self._relays:
            relay.join(timeout=5)


def worker_sweep_file(directory: Path, config: SweepConfig, data: pd.DataFrame | None) -> Path:
    """The sweep file (and a DataFrame's rows) the chief's local workers start from."""
    folder = directory / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        data.to_parquet(folder / "data.parquet", index=False)
        config = config.model_copy(update={"data": config.data.model_copy(update={"source": str(folder / "data.parquet")})})
    path = folder / "sweep.yaml"
    path.write_text(config.to_yaml())
    return path


def serve_as_chief(
    config: SweepConfig, directory: Path, encoded: Any, observers: Sequence[Any], *, workers: int = 0,
    data: pd.DataFrame | None = None, deadline: float | None = None, worker_env: dict[str, str] | None = None,
    quiet: bool = False, stream: Any = None,
) -> Any:
    """Serve the oracle; with `workers`, start them here (with `worker_env` added to their
    environment) and hand a dead or silent worker's trial to the others, telling `observers`."""
    from textsweep.search.tuner import build_tuner, consecutive_failures_as_sweep_error  # tuner.py imports this module

    tuner = build_tuner(config, directory, num_classes=len(encoded.classes), vocabulary_sizes=encoded.vocabulary_sizes(),
                        deadline=deadline)  # the chief runs no trial
    tuner.oracle.verbose = 0  # the workers report progress; KerasTuner's own table would repeat it
    timeout = config.search.worker_timeout_seconds
    pool = None
    if workers:
        pool = WorkerPool(config_path=worker_sweep_file(directory, config, data), count=workers, quiet=quiet,
                          stream=stream, extra_env=worker_env or {})

    def say(line: str) -> None:
        if pool is not None:
            pool.say(line)
        else:
            print(f"[chief] {line}", file=sys.stderr, flush=True)

    def requeue_lost_trials(servicer: Any) -> None:
        """A local worker that died, or any worker silent for search.worker_timeout: its trial goes to another."""
        lost = [(tuner_id, f"worker {tuner_id} died (exit code {code})") for tuner_id, code in (pool.newly_dead() if pool else [])]
        lost += [(tuner_id, f"worker {tuner_id} reported no epoch for {config.search.worker_timeout} (search.worker_timeout)")
                 for tuner_id in servicer.silent_workers(timeout)]
        for tuner_id, reason in lost:
            trial_id = servicer.requeue_trial_of(tuner_id, reason)
            for observer in observers:
                observer.worker_lost(WorkerLost(tuner_id, trial_id, reason))
            say(reason + (f"; trial {trial_id} goes to another worker" if trial_id else ""))

    with pool if pool is not None else contextlib.nullcontext(), consecutive_failures_as_sweep_error(config):
        serve_oracle(tuner, poll=requeue_lost_trials)
    return tuner
