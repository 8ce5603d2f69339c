"""search/state.py: what a resume must find unchanged, and the refusal that names what changed."""

import pytest

from textsweep.config import parse_config
from textsweep.errors import OPTION_STYLE, ConfigError
from textsweep.search.state import check_resumable, sweep_identity, write_state


def test_resume_refuses_a_changed_space_or_data(tmp_path, config_for):
    config = config_for("random")
    identity = sweep_identity(config, "fp1")
    write_state(tmp_path, identity | {"sweep_run_id": "abc"})
    assert check_resumable(tmp_path, identity, "t")["sweep_run_id"] == "abc"
    changed = config_for("random", space={"embed_dim": {"min": 8, "max": 64, "step": 8}})
    with pytest.raises(ConfigError, match=r"different search space.*Pass restart=True"):  # the API's keyword
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    with pytest.raises(ConfigError, match=r"different data.*fp1 -> fp2.*restart=True"):
        check_resumable(tmp_path, sweep_identity(config, "fp2"), "t")
    # the budget (trials or time) and the promote flag may change between runs of the same sweep
    assert check_resumable(tmp_path, sweep_identity(config_for("random", promote=True, max_trials=9, max_time="2h"), "fp1"), "t")


def test_the_refusal_names_each_changed_setting_with_old_and_new_values(tmp_path, config_for):
    write_state(tmp_path, sweep_identity(config_for("random"), "fp1") | {"sweep_run_id": "abc"})
    changed = parse_config({"name": "t", "defaults": {"epochs": 6, "dropout": 0.3, "embed_dim": 8, "lstm_out": 4},
                            "search": {"algorithm": "bayesian", "max_trials": 5,
                                       "space": {"embed_dim": {"min": 8, "max": 64, "step": 8}, "lstm_out": {"values": [4, 8]}}}})
    with pytest.raises(ConfigError) as refused:
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    message = str(refused.value)
    # integer hyperparameters as integers (validation keeps them as floats: 8.0)
    assert 'search.space.embed_dim: {"min": 8, "max": 32, "step": 8} -> {"min": 8, "max": 64, "step": 8}' in message
    assert 'search.space.batch_size: {"values": [32, 64]} -> not searched' in message
    assert 'search.space.lstm_out: not searched -> {"values": [4, 8]}' in message
    assert 'search.algorithm: "random" (default) -> "bayesian"' in message
    assert "defaults.epochs: 4 -> 6" in message and "defaults.dropout: 0.2 (default) -> 0.3" in message
    assert "defaults.lstm_out: 196 (default) -> 4" in message
    assert "restart=True" in message and "--restart" not in message  # from Python: the keyword argument
    cli_style = OPTION_STYLE.set("cli")
    try:
        with pytest.raises(ConfigError, match="Pass --restart to start"):  # from the CLI: the flag
            check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")
    finally:
        OPTION_STYLE.reset(cli_style)


def test_a_refusal_after_a_data_change_names_the_data_setting(tmp_path):
    config = parse_config({"name": "t", "data": {"limit": 300}})
    write_state(tmp_path, sweep_identity(config, "fp1") | {"sweep_run_id": "abc"})
    changed = parse_config({"name": "t", "data": {"limit": 400, "cleaning": "none"}})
    with pytest.raises(ConfigError) as refused:
        check_resumable(tmp_path, sweep_identity(changed, "fp2"), "t")
    assert 'different data (data.cleaning: "unicode" (default) -> "none"; data.limit: 300 -> 400; fingerprint fp1 -> fp2)' \
        in str(refused.value)
    with pytest.raises(ConfigError, match=r"the same data settings, but the rows changed: fingerprint fp1 -> fp3"):
        check_resumable(tmp_path, sweep_identity(config, "fp3"), "t")  # the file's rows changed, not the sweep file
    assert check_resumable(tmp_path, sweep_identity(config, "fp1"), "t")["sweep_run_id"] == "abc"


def test_a_state_file_from_before_settings_were_kept_still_resumes_and_refuses(tmp_path, config_for):
    identity = sweep_identity(config_for("random"), "fp1")
    legacy = {"search_digest": identity["search_digest"], "data_fingerprint": "fp1", "sweep_run_id": "abc"}
    write_state(tmp_path, legacy)
    assert check_resumable(tmp_path, identity, "t")["sweep_run_id"] == "abc"  # the same digest as before
    changed = config_for("random", space={"embed_dim": {"values": [8]}})
    with pytest.raises(ConfigError, match=r"different search space or defaults; resuming"):
        check_resumable(tmp_path, sweep_identity(changed, "fp1"), "t")

