"""search/progress.py: the progress bar, an observer of the search."""

import io

from textsweep.search.progress import ProgressBar
from textsweep.search.tuner import build_tuner, fit_arguments


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_pipe_is_one_line_per_trial(tmp_path, encoded_reviews, tiny_config):
    config = tiny_config(algorithm="grid", epochs=2, max_trials=5)  # a 3-point grid ends before the budget
    stream = io.StringIO()
    tuner = build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream)])
    tuner.search(encoded_reviews, **fit_arguments(config))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3
    assert lines[0].startswith("trial 1/3 lstm_out=4 | done val_accuracy ") and "| best val_accuracy " in lines[0]  # trial 0: the defaults
    assert "ETA" in lines[0] and "ETA" not in lines[2]


def test_progress_on_a_terminal_is_a_bar_that_resumes_where_the_sweep_was(tmp_path, encoded_reviews, tiny_config):
    config = tiny_config(epochs=2, max_trials=3)
    build_tuner(config.model_copy(update={"search": config.search.model_copy(update={"max_trials": 2})}),
                tmp_path / "t").search(encoded_reviews, **fit_arguments(config))
    stream = Terminal()
    tuner = build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream)])
    tuner.search(encoded_reviews, **fit_arguments(config))
    shown = stream.getvalue()
    assert "\r" in shown  # tqdm redraws the bar in place
    assert " 67%|" in shown and "100%|" in shown  # it started at the 2 trials already done
    assert "trial 3/3" in shown and "epoch 2/2 val_accuracy" in shown and "trial 3/3 lstm_out=" in shown
    assert "[00:" in shown and "<" in shown  # tqdm's elapsed<remaining


def test_quiet_progress_shows_nothing(tmp_path, encoded_reviews, tiny_config):
    config = tiny_config(epochs=1, max_trials=1)
    stream = Terminal()
    build_tuner(config, tmp_path / "t", observers=[ProgressBar(stream=stream, quiet=True)]).search(
        encoded_reviews, **fit_arguments(config))
    assert stream.getvalue() == ""

