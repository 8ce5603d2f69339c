"""A sweep's state between runs: what must not change on resume, where it lives, one owner at a time.

KerasTuner keeps its own state (oracle, trials, checkpoints) in the tuner's directory; textsweep
adds `textsweep_state.json` beside it: the sweep's identity (search settings and data
fingerprint, refused if changed) and the store and sweep run it belongs to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from textsweep.config import DataConfig, SearchConfig, SweepConfig, TrainingParams, space_entry_text
from textsweep.errors import ConfigError, SweepError, option

STATE_FILE = "textsweep_state.json"

# May change between runs of the same sweep: the budget (extend a sweep, in trials or time),
# what happens at its end, and when it gives up.
RESUMABLE_CHANGES = {"promote", "max_consecutive_failures", "max_trials", "max_time", "worker_timeout", "reference", "confirm"}


def _searched(config: SweepConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    # Only values that differ from textsweep's defaults: a new setting added later, at its
    # default, must not make every earlier sweep unresumable.
    search = config.search.model_dump(mode="json", exclude=RESUMABLE_CHANGES, exclude_defaults=True)
    return search, config.defaults.model_dump(mode="json", exclude_defaults=True)


def sweep_identity(config: SweepConfig, data_fingerprint: str) -> dict[str, Any]:
    """What must not change between a sweep and its resume: the search and the data.

    `settings` (each searched setting by its sweep-file key) and `data_settings` (the `data`
    section) go into the state file too, so that a refusal can name what changed.
    """
    search, defaults = _searched(config)
    # The digest textsweep has always written, so sweeps started before `settings` still resume.
    digest = hashlib.sha256(json.dumps([search, defaults], sort_keys=True).encode()).hexdigest()[:16]
    space = search.pop("space", {})
    settings = (
        {f"search.{key}": value for key, value in search.items()}
        | {f"search.space.{key}": value for key, value in space.items()}
        | {f"defaults.{key}": value for key, value in defaults.items()}
    )
    data_settings = {f"data.{key}": value for key, value in config.data.model_dump(mode="json", exclude_defaults=True).items()}
    return {"search_digest": digest, "data_fingerprint": data_fingerprint, "settings": settings, "data_settings": data_settings}


def _setting_text(key: str, settings: dict[str, Any]) -> str:
    section, _, name = key.partition(".")
    if key in settings:
        value = settings[key]
        if name.startswith("space.") and isinstance(value, dict):
            return space_entry_text(name.removeprefix("space."), value)
        return json.dumps(value)
    if name.startswith("space."):
        return "not searched"
    fields = {"search": SearchConfig, "defaults": TrainingParams, "data": DataConfig}[section].model_fields
    return f"{json.dumps(fields[name].default)} (default)" if name in fields else "default"


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: old -> new` for each setting that differs between two `settings` of `sweep_identity`."""
    missing = object()
    keys = sorted(k for k in saved.keys() | current.keys() if saved.get(k, missing) != current.get(k, missing))
    return [f"{key}: {_setting_text(key, saved)} -> {_setting_text(key, current)}" for key in keys]


def read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def check_resumable(directory: Path, identity: dict[str, Any], config_name: str) -> dict[str, Any] | None:
    """The saved state of an earlier run of this sweep, or None; refuse a changed sweep, naming what changed."""
    state = read_state(directory)
    if state is None:
        return None
    changed = []
    if state.get("search_digest") != identity["search_digest"]:
        # State files written before textsweep kept the settings cannot say which one changed.
        changes = changed_settings(state["settings"], identity["settings"]) if "settings" in state else []
        changed.append("search space or defaults" + (f" ({'; '.join(changes)})" if changes else ""))
    if state.get("data_fingerprint") != identity["data_fingerprint"]:
        fingerprints = f"fingerprint {state.get('data_fingerprint')} -> {identity['data_fingerprint']}"
        if "data_settings" not in state:  # written before textsweep kept them
            changed.append(f"data ({fingerprints})")
        elif changes := changed_settings(state["data_settings"], identity["data_settings"]):
            changed.append(f"data ({'; '.join(changes)}; {fingerprints})")
        else:
            changed.append(f"data (the same data settings, but the rows changed: {fingerprints})")
    if not changed:
        return state
    raise ConfigError(
        f"sweep {config_name!r} already has state in {directory} with a different {' and '.join(changed)}; "
        f"resuming would mix two searches. Pass {option('restart', True)} to start this sweep over, "
        "or give the changed sweep a new `name`."
    )


def discard_state(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)


def resume_state(directory: Path, identity: dict[str, Any], config_name: str, *, restart: bool) -> dict[str, Any] | None:
    """The saved state this run resumes (None: a new sweep); `restart` discards it first."""
    if restart:
        discard_state(directory)
    return check_resumable(directory, identity, config_name)


@contextlib.contextmanager
def owner_lock(directory: Path, name: str, role: str, oracle: str | None = None) -> Iterator[None]:
    """One owner per sweep: a second process on a running sweep is refused, naming the first.

    An OS file lock (flock) beside the tuner state: the OS releases it when its process dies,
    so a sweep killed with kill -9 never blocks its own resume.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.parent / f"{directory.name}.owner"
    with path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise SweepError(running_elsewhere(name, lock.read())) from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "role": role,
                 "started": datetime.now().isoformat(timespec="seconds")}
        if oracle is not None:  # a chief: where workers join it
            owner["oracle"] = oracle
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps(owner))
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def running_elsewhere(name: str, owner_json: str) -> str:
    try:
        owner = json.loads(owner_json)
    except ValueError:
        owner = {}
    who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
    if owner.get("oracle"):
        ip, port = owner["oracle"].rsplit(":", 1)
        join = (f"to add this machine to it, join as a worker: KERASTUNER_TUNER_ID=tuner<N> "
                f"KERASTUNER_ORACLE_IP={ip} KERASTUNER_ORACLE_PORT={port} textsweep sweep --config <the same file>")
    else:
        join = ("a single-process sweep takes no workers: to run trials in parallel, stop it (Ctrl-C; it resumes) "
                f"and rerun with {option('workers', 2)} (or more)")
    return (f"sweep {name!r} is already running ({who}); running it twice would run every trial twice. "
            f"Wait for it to finish (then this command resumes it), or {join}")
