"""The MLflow side of textsweep. Imports nothing of search/: the search hands it trial events.

- store.py: the store (URI, checks, the experiment, where tuner state lives beside it);
- tags.py: every tag name, runs and model versions alike;
- runs.py: a job's run (train or sweep) and what it logs, the sweep's summary;
- artifacts.py: the sweep file, the dataset, tokenizers, Keras models, figures;
- observer.py: `MlflowTrialObserver`, each trial a nested run;
- queries.py: leaderboards and runs read back, stale runs repaired, why a sweep ended.
"""

from textsweep.tracking.artifacts import (
    KERAS_MODEL_NAME, TOKENIZER_FILE, TOKENIZER_FILES, log_dataset_and_sweep_file, log_keras_model,
    log_learning_curves, log_vocabulary,
)
from textsweep.tracking.observer import MlflowTrialObserver
from textsweep.tracking.queries import (
    check_state_store, chief_sweep_run, count_trial_runs, epoch_seconds, execution_runs, find_run, find_sweep_runs,
    kill_running_trial_runs, leaderboard, no_finished_trial, reference_run, supersede_earlier_runs,
    state_owner, sweep_leaderboard, time_budget_reason,
)
from textsweep.tracking.runs import (
    end_active_runs, environment_tags, epoch_metrics_callback, job_run, log_params, log_reference_run,
    log_sweep_outcome, log_sweep_summary, sweep_run,
)
from textsweep.tracking.store import (
    check_store, connect, experiment_id, experiment_url, redact, sqlite_path, tracking_uri, tuner_directory, ui_command,
)
