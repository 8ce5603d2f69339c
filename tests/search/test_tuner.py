"""search/tuner.py: KerasTuner's trial loop on textsweep's oracle, its events and the wall-clock deadline."""

import time
from pathlib import Path

from textsweep.events import TrialObserver
from textsweep.search.tuner import build_tuner, fit_arguments


class Recorder(TrialObserver):
    """An observer of the search: when each trial began and each epoch ended (time.time())."""

    def __init__(self):
        self.began, self.epochs_ended = {}, {}

    def trial_begins(self, trial):
        self.began[trial.trial_id] = time.time()

    def epoch_ends(self, event):
        self.epochs_ended.setdefault(event.trial.trial_id, []).append(time.time())


class BudgetRunsOutAtEpoch(Recorder):
    """The wall-clock budget runs out at the end of epoch `budget_epoch` of the first trial.

    The deadline is set to that moment, so the test waits on an event (an epoch's end), not on a
    guess at how many epochs this machine trains in so many seconds.
    """

    def __init__(self, budget_epoch: int):
        super().__init__()
        self.budget_epoch = budget_epoch
        self.tuner = None

    def epoch_ends(self, event):
        super().epoch_ends(event)
        if event.epoch == self.budget_epoch and len(self.began) == 1:
            self.tuner.deadline = self.tuner.oracle.deadline = time.time()


def test_the_deadline_stops_the_running_trial_after_its_epoch_and_keeps_it(tmp_path, encoded_reviews, tiny_config):
    config = tiny_config(epochs=200, max_trials=20)  # 200 epochs: only the budget can end this trial
    recorder = BudgetRunsOutAtEpoch(budget_epoch=2)
    tuner = build_tuner(config, tmp_path / "t", observers=[recorder], deadline=time.time() + 3600)
    recorder.tuner = tuner
    tuner.search(encoded_reviews, **fit_arguments(config))
    assert list(recorder.began) == ["00"]  # no trial started after the deadline
    assert len(recorder.epochs_ended["00"]) == 3  # stopped at the end of the epoch in which the budget ran out
    stopped = tuner.oracle.get_trial("00")
    assert stopped.status == "COMPLETED" and stopped.score is not None and stopped.best_step <= 2  # kept, best epoch
    assert set(tuner.oracle.trials) == {"00"} and tuner.stopped_by_time


def test_a_deadline_passed_before_the_first_trial_still_gives_one_epoch_of_it(tmp_path, encoded_reviews, tiny_config):
    """search.max_time shorter than the sweep's start (1s): the sweep still ends with a result, which
    measures how long an epoch takes; no second trial starts."""
    config = tiny_config(epochs=200, max_trials=20)
    recorder = Recorder()
    tuner = build_tuner(config, tmp_path / "t", observers=[recorder], deadline=time.time() - 1)
    tuner.search(encoded_reviews, **fit_arguments(config))
    assert list(recorder.began) == ["00"] and len(recorder.epochs_ended["00"]) == 1
    assert tuner.oracle.get_trial("00").status == "COMPLETED" and tuner.stopped_by_time


def test_a_search_within_its_time_is_not_stopped_by_it(tmp_path, encoded_reviews, tiny_config):
    config = tiny_config(epochs=1, max_trials=2)
    tuner = build_tuner(config, tmp_path / "t", deadline=time.time() + 600)
    tuner.search(encoded_reviews, **fit_arguments(config))
    assert len(tuner.oracle.trials) == 2 and not tuner.stopped_by_time



def test_a_trial_run_again_writes_its_checkpoint_while_its_old_writer_still_holds_the_file(tmp_path, encoded_reviews, tiny_config):
    """A worker silent for search.worker_timeout (stopped, hung) may be frozen while it writes its
    trial's checkpoint, holding HDF5's lock on it; the worker that runs the trial again must not
    fail with "unable to lock file". Here a real process holds the file open for writing."""
    import subprocess
    import sys

    config = tiny_config(epochs=1, max_trials=1)
    tuner = build_tuner(config, tmp_path / "t")
    checkpoint = tuner._get_checkpoint_fname("0")  # KerasTuner's name for trial 0's best-epoch weights
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, h5py; f = h5py.File(sys.argv[1], 'w'); print('open', flush=True); "
                               "sys.stdin.read()", checkpoint], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"  # the file is open and locked for writing from here on
        tuner.search(encoded_reviews, **fit_arguments(config))
    finally:
        holder.kill()
        holder.wait()
    trial = tuner.oracle.get_trial("0")
    assert trial.status == "COMPLETED", trial.message
    assert trial.score is not None
