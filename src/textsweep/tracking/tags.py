"""Every tag name textsweep writes, in one place: on runs, on the experiment, on model versions.

Run layout (what the UI, promote and the tests read):
- a job run (TAG_KIND `train` or `sweep`) in the experiment named by the sweep file's `name`;
- per trial a nested run (`mlflow.parentRunId`, TAG_TRIAL, TAG_TUNER, TAG_KIND `trial`);
- per further execution of a confirmed trial (search.confirm) a run nested under its trial's run
  (TAG_KIND `execution`, TAG_TRIAL, TAG_SWEEP_RUN; params `seed`, `trial_id`); the trial run then
  holds the metrics MEAN_METRIC, STD_METRIC (over all its executions) and SEEDS_METRIC;
- the sweep's linear reference, a nested run with TAG_KIND `reference`;
- a promotion's blend of a trial and the reference, a nested run with TAG_KIND `blend`;
- registered versions carry the sweep run, trial run, data fingerprint and test metrics.
"""

TAG_PARENT = "mlflow.parentRunId"  # MLflow's own: a trial's sweep run
TAG_KIND = "textsweep.kind"  # train, sweep, trial, execution, reference or blend
KIND_EXECUTION = "execution"  # a further execution of a trial with another seed (search.confirm)
TAG_VERSION = "textsweep.version"  # the textsweep version that wrote the run
TAG_TRIAL = "textsweep.trial_id"  # KerasTuner's trial id (runs and model versions)
TAG_TUNER = "textsweep.tuner_id"  # which process ran the trial (`tuner0`...: a worker)
TAG_FAILURE = "textsweep.failure_reason"  # why a run ended FAILED or KILLED, in one line
TAG_RUN = "textsweep.run_id"  # on an `mlflow run` launcher run: where textsweep logged the job
TAG_LAUNCHER = "textsweep.launcher_run_id"  # the reverse link, on textsweep's run
TAG_DEADLINE = "textsweep.deadline"  # the sweep's search.max_time as a Unix time, for its workers
TAG_STOPPED_BY = "textsweep.stopped_by"  # what ended the search: `budget` (max_trials) or `max_time`
TAG_ORACLE = "textsweep.oracle"  # a chief's oracle address, where its workers find the sweep run
TAG_BEST_TRIAL, TAG_BEST_RUN = "textsweep.best_trial_id", "textsweep.best_run_id"  # on the sweep run
TAG_CONFIRMATION = "textsweep.confirmation"  # on the sweep run: what search.confirm did, in one line
# On a confirmed trial's run: its best_<objective> averaged over its executions (the original
# included), their sample standard deviation, and how many executions the mean holds.
MEAN_METRIC, STD_METRIC, SEEDS_METRIC = "mean_{objective}", "std_{objective}", "seeds"
NOTE = "mlflow.note.content"  # MLflow's run description
# Where a run ran (runs.environment_tags): device, GPUs, CPU and library versions, the code's commit.
TAG_DEVICE, TAG_GPU_COUNT, TAG_GPU = "textsweep.device", "textsweep.gpu_count", "textsweep.gpu"
TAG_CPU, TAG_CPU_COUNT, TAG_GIT_COMMIT = "textsweep.cpu", "textsweep.cpu_count", "textsweep.git_commit"
TAG_TENSORFLOW, TAG_KERAS = "textsweep.tensorflow_version", "textsweep.keras_version"

# MLflow's own experiment tag: its UI opens a "custom model development" experiment on its runs,
# not on the GenAI overview (traces, token usage) that MLflow 3.17 shows by default.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"

# Model versions (registry.py); each test metric is also a version tag `textsweep.<metric>`.
TAG_SWEEP_RUN = "textsweep.sweep_run_id"  # also on execution runs, whose parent is their trial's run
TAG_TRIAL_RUN = "textsweep.trial_run_id"  # a trial's version (and a blend run: its trial)
TAG_CANDIDATE = "textsweep.candidate"  # what a version is: lstm (a trial), reference or blend (candidates.py)
TAG_CANDIDATE_RUN = "textsweep.candidate_run_id"  # a reference or blend version's run
TAG_LSTM_WEIGHT = "textsweep.lstm_weight"  # a blend version's weight on its trial
TAG_FINGERPRINT = "textsweep.data_fingerprint"
TAG_TEST_ROWS = "textsweep.test_rows"
TAG_GATE = "textsweep.gate"
TAG_CHAMPION_SCORE = "textsweep.champion_{metric}"  # the champion's gate metric, re-evaluated on this split


def metric_tag(name: str) -> str:
    """The version tag holding a test metric, e.g. `textsweep.test_accuracy`."""
    return f"textsweep.{name}"
