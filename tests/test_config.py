from pathlib import Path

import pytest
import yaml

from textsweep.config import SweepConfig, load_config, parse_config, params_with
from textsweep.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="my.yaml")
    return str(caught.value)


def test_defaults_are_seed_a():
    config = parse_config({"name": "x"})
    d = config.defaults
    assert (d.max_features, d.embed_dim, d.lstm_out, d.batch_size, d.epochs) == (2000, 128, 196, 32, 7)
    assert (d.spatial_dropout, d.dropout, d.recurrent_dropout, d.maxlen, d.output) == (0.4, 0.2, 0.2, None, "softmax")
    assert (config.data.test_size, config.data.seed) == (0.33, 42)
    assert config.registry.alias == "champion" and config.model_name == "x"


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_files_load(path):
    config = load_config(path)
    assert isinstance(config, SweepConfig) and config.search.space


def test_public_keys_of_the_issue_example_load():
    example = """
name: uz-seed
data: {source: hf://datasets/adkhamboy/sentiment-uz/sentiment_uz.csv, text_column: text, label_column: label,
       limit: null, test_size: 0.33, val_size: 0.1, seed: 42}
defaults: {max_features: 2000, embed_dim: 128, lstm_out: 196, spatial_dropout: 0.4, dropout: 0.2,
           recurrent_dropout: 0.2, batch_size: 32, epochs: 7, maxlen: null}
search:
  algorithm: random
  max_trials: 20
  objective: val_accuracy
  space:
    max_features: {values: [1000, 2000, 4000]}
    embed_dim: {min: 32, max: 256, step: 32}
registry: {model_name: uz-sentiment, alias: champion}
"""
    config = parse_config(yaml.safe_load(example))
    assert config.search.space["embed_dim"].step == 32 and config.model_name == "uz-sentiment"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"name": "x", "search": {"max_trails": 3}}, "unknown key 'search.max_trails'; did you mean 'max_trials'?"),
        ({"name": "x", "dta": {}}, "did you mean 'data'?"),
        ({"name": "x", "search": {"space": {"lstm_ot": {"values": [8]}}}}, "did you mean 'lstm_out'?"),
        ({"name": "x", "search": {"space": {"lstm_out": {"vals": [8]}}}}, "did you mean 'values'?"),
        ({"name": "x", "search": {"space": {"embed_dim": {"min": 64, "max": 32}}}}, "min (64) is greater than max (32)"),
        ({"name": "x", "defaults": {"dropout": 1.0}}, "defaults.dropout: Input should be less than 1"),
        ({"name": "x", "search": {"space": {"dropout": {"min": 0, "max": 1.5}}}}, "search.space.dropout: 1.5 is not allowed"),
        ({"name": "x", "search": {"max_trials": 0}}, "search.max_trials: Input should be greater than or equal to 1"),
        ({"name": "x", "defaults": {"batch_size": 0}}, "defaults.batch_size: Input should be greater than or equal to 1"),
        ({"name": "x", "search": {"algorithm": "sobol"}}, "search.algorithm: Input should be 'random', 'bayesian', 'hyperband' or 'grid'"),
        ({"name": "x", "search": {"algorithm": "grid", "space": {"dropout": {"min": 0, "max": 0.5}}}}, "grid search needs discrete values"),
        ({"data": {}}, "name: required key is missing"),
        ([1, 2], "expected a YAML mapping"),
        ({"name": "x", "registry": {"alias": "latest"}}, "registry: alias 'latest': MLflow aliases hold only"),
        ({"name": "x", "registry": {"alias": "v2"}}, "'latest' and v<number> are reserved"),
        ({"name": "x", "registry": {"alias": "challenger"}}, "what textsweep calls versions that lose the gate"),
        ({"name": "x", "registry": {"model_name": "a/b"}}, "cannot be empty or contain '/' or ':'"),
        ({"name": "a:b"}, "set registry.model_name"),
        ({"name": "x", "search": {"space": {"max_features": {"min": 1000, "max": 1e12}}}},
         "search.space.max_features: 1e+12 is not allowed: max_features 1,000,000,000,000 is above 2,000,000"),
        ({"name": "x", "defaults": {"max_features": 10_000_000}}, "defaults: max_features 10,000,000 is above 2,000,000"),
        ({"name": "x", "search": {"space": {"max_features": {"values": [2000, 1_000_000]}, "embed_dim": {"min": 32, "max": 1024}}}},
         "search.space: the largest trial does not fit in memory: max_features 1,000,000 x embed_dim 1,024 is an embedding of 1,024,000,000 weights (3.8 GiB"),
        ({"name": "x", "data": {"classes": ["neg", "pos"], "label_map": {"neg": 0, "pos": 1}}}, "give data.classes or data.label_map, not both"),
        ({"name": "x", "data": {"classes": ["pos"]}}, "fewer than 2 classes"),
        ({"name": "x", "data": {"classes": ["neg", "pos", "neg"]}}, "classes lists neg more than once"),
        ({"name": "x", "data": {"label_map": {"neg": 0, "pos": 2}}}, "label_map values [0, 2] must be the class indices 0..n-1"),
        ({"name": "x", "data": {"cleaning": "ascii"}}, "data.cleaning: Input should be 'unicode', 'seed_a' or 'none'"),
    ],
)
def test_invalid_sweep_files_name_the_key_and_the_fix(raw, expected):
    message = error_of(raw)
    assert message.startswith("my.yaml") and expected in message


def test_data_keys_for_any_labelled_text_set():
    data = parse_config({"name": "x", "data": {"classes": ["negative", "neutral", "positive"], "cleaning": "none"}}).data
    assert data.classes == ["negative", "neutral", "positive"] and data.cleaning == "none"
    assert parse_config({"name": "x", "data": {"classes": [1, 0]}}).data.classes == [1, 0]  # ints stay ints
    assert parse_config({"name": "x", "data": {"label_map": {"neg": 0, "negative": 0, "pos": 1, "neu": 2}}}).data.label_map["neu"] == 2
    assert parse_config({"name": "x"}).data.cleaning == "unicode"
    assert load_config(PROJECT_ROOT / "sweeps" / "uz.yaml").data.cleaning == "seed_a"  # the notebook's rule


def test_missing_sweep_file(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass an existing file"):
        load_config(tmp_path / "nope.yaml")


def test_params_with_casts_integer_hyperparameters():
    params = params_with(parse_config({"name": "x"}).defaults, {"embed_dim": 64.0, "dropout": 0.3})
    assert params.embed_dim == 64 and isinstance(params.embed_dim, int) and params.dropout == 0.3


# ---------------------------------------------------------------- booleans are not numbers

SECTIONS = {"data": "DataConfig", "defaults": "TrainingParams", "search": "SearchConfig", "registry": "RegistryConfig"}
LABEL_FIELDS = {("data", "classes"), ("data", "label_map")}  # labels may be booleans; label_map is checked below


def numeric_fields() -> list[tuple[str, str]]:
    """Every (section, key) typed as a number, found from the models: a new numeric key is checked too."""
    import textsweep.config as config_module

    found = []
    for section, model_name in SECTIONS.items():
        for key, field in getattr(config_module, model_name).model_fields.items():
            text = repr(field.annotation)
            if field.annotation is not bool and ("int" in text or "float" in text) and (section, key) not in LABEL_FIELDS:
                found.append((section, key))
    return found


def test_every_numeric_key_is_found():
    assert len(numeric_fields()) == 19 and ("defaults", "batch_size") in numeric_fields()


@pytest.mark.parametrize(("section", "key"), numeric_fields(), ids=lambda v: v)
@pytest.mark.parametrize("boolean", [True, False])
def test_booleans_are_refused_for_every_numeric_key(section, key, boolean):
    assert f"{section}.{key}: {str(boolean).lower()} is a boolean, not a number" in error_of({"name": "x", section: {key: boolean}})


@pytest.mark.parametrize(
    "space, expected",
    [
        ({"batch_size": {"values": [True, 64]}}, "space.batch_size takes numbers; [True, 64] holds booleans"),
        ({"dropout": {"min": False, "max": 0.3}}, "search.space.dropout.min: false is a boolean, not a number"),
        ({"embed_dim": {"min": 8, "max": True}}, "search.space.embed_dim.max: true is a boolean"),
        ({"embed_dim": {"min": 8, "max": 64, "step": True}}, "search.space.embed_dim.step: true is a boolean"),
    ],
)
def test_booleans_are_refused_in_the_space_of_numeric_keys(space, expected):
    assert expected in error_of({"name": "x", "search": {"space": space}})


def test_booleans_are_refused_in_sweep_files_and_dicts_alike_and_durations_and_label_map_indices(tmp_path):
    from textsweep.api import resolve_config

    path = tmp_path / "sweep.yaml"
    path.write_text("name: x\ndefaults: {batch_size: true}\n")  # trained with batch size 1 before
    with pytest.raises(ConfigError, match="defaults.batch_size: true is a boolean, not a number; write a number"):
        load_config(path)
    with pytest.raises(ConfigError, match="defaults.batch_size: true is a boolean"):
        resolve_config({"name": "x", "defaults": {"batch_size": True}})
    assert "search.max_time: true is a boolean, not a duration" in error_of({"name": "x", "search": {"max_time": True}})
    assert "data.label_map.pos: true is a boolean" in error_of({"name": "x", "data": {"label_map": {"neg": 0, "pos": True}}})
    # the one boolean key that is searched keeps its values, and numbers stay numbers
    space = parse_config({"name": "x", "search": {"space": {"bidirectional": {"values": [False, True]}}}}).search.space
    assert space["bidirectional"].values == [0.0, 1.0]
    assert parse_config({"name": "x", "defaults": {"batch_size": 64.0, "dropout": 0}}).defaults.batch_size == 64


# ---------------------------------------------------------------- smaller mistakes


def test_label_map_number_keys_are_labels_and_boolean_keys_get_the_quoting_hint():
    config = parse_config(yaml.safe_load("name: x\ndata: {label_map: {0: 0, 1: 1, 2: 1}}"))
    assert config.data.label_map == {0: 0, 1: 1, 2: 1}
    # written back (sweep.yaml, the workers' file) with the keys still numbers
    assert parse_config(yaml.safe_load(config.to_yaml())).data.label_map == {0: 0, 1: 1, 2: 1}
    assert "data.label_map: key True is a boolean: YAML reads unquoted yes/no/true/false/on/off as booleans; quote" in error_of(
        yaml.safe_load("name: x\ndata: {label_map: {yes: 1, no: 0}}"))
    assert "keys [1, '1'] are one label written twice" in error_of({"name": "x", "data": {"label_map": {1: 0, "1": 1}}})


def test_the_same_column_for_text_and_label_is_refused_at_load():
    assert "data: text_column and label_column are both 'review'; the texts and their labels are two columns" in error_of(
        {"name": "x", "data": {"text_column": "review", "label_column": "review"}})


def test_a_directory_as_sweep_file_says_it_is_one_and_what_to_pass(tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "mine.yaml").write_text("name: mine\n")
    (tmp_path / "python_env.yaml").write_text("python: '3.11'\n")  # YAML, but no sweep file
    with pytest.raises(ConfigError, match=r"sweep file '.*' is a directory, not a file; pass a sweep file \(YAML\), "
                                          r"e.g. --config .*sweeps/mine.yaml"):
        load_config(tmp_path)
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "textsweep"), "sweep", "--config", "."]
    cli = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert "textsweep: error: sweep file '.' is a directory, not a file; pass a sweep file (YAML), e.g. --config sweeps/mine.yaml" in cli.stderr


def test_integer_space_values_are_written_as_integers_and_read_back_the_same():
    config = parse_config({"name": "ints", "search": {"space": {"batch_size": {"values": [8, 16]},
                                                                 "dropout": {"values": [0.0, 0.5]},
                                                                 "embed_dim": {"min": 32, "max": 64, "step": 32}}}})
    written = yaml.safe_load(config.to_yaml())["search"]["space"]
    assert written["batch_size"]["values"] == [8, 16, 32] and all(type(v) is int for v in written["batch_size"]["values"])
    assert written["embed_dim"]["values"] == [32, 64, 128]  # widened to hold the default 128
    assert written["dropout"]["values"] == [0.0, 0.2, 0.5]  # floats stay floats
    assert parse_config(yaml.safe_load(config.to_yaml())).model_dump() == config.model_dump()  # the same sweep, read back
