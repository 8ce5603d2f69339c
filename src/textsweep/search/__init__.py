"""The KerasTuner side of a sweep. Imports no MLflow: what it learns it hands to observers.

- oracles.py: KerasTuner's oracles with a wall-clock budget, the defaults as trial 0, a grid
  that survives a resume;
- tuner.py: KerasTuner's trial loop, emitting trial events (textsweep.events) to observers;
- confirmation.py: the top trials trained again with other seeds after the search (search.confirm);
- progress.py: the progress bar, one observer;
- state.py: what a resume must find unchanged, and one owner per sweep;
- distributed.py: chief and worker roles on KerasTuner's own distributed mode.
"""

from textsweep.search.confirmation import confirm_top_trials, confirmation_text
from textsweep.search.distributed import WorkerHeartbeat, distributed_role, local_chief_environment, oracle_address, serve_as_chief
from textsweep.search.progress import ProgressBar
from textsweep.search.state import owner_lock, resume_state, sweep_identity, write_state
from textsweep.search.tuner import build_tuner, fit_arguments, long_lived_objects_frozen, run_search

__all__ = [
    "ProgressBar", "WorkerHeartbeat", "build_tuner", "confirm_top_trials", "confirmation_text", "distributed_role",
    "fit_arguments", "local_chief_environment", "long_lived_objects_frozen", "oracle_address",
    "owner_lock", "resume_state", "run_search", "serve_as_chief", "sweep_identity", "write_state",
]
