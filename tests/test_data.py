import pandas as pd
import pytest

from textsweep.config import DataConfig
from textsweep.data import clean_texts, download_from_hub, load_data, prepare, read_embedded_imdb
from textsweep.errors import DataError
from conftest import review_rows


def test_cleaning_keeps_seed_a_quirks():
    cleaned = clean_texts(pd.Series(["O'yin ZO'R!", "a[b]_c`d\\e^f", "Yaxshi, 10/10 :)"])).tolist()
    # the apostrophe of o' goes; A-z keeps [ \ ] ^ _ and the backtick
    assert cleaned == ["oyin zor", "a[b]_c`d\\e^f", "yaxshi 1010 "]


def frame(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


def test_duplicates_are_dropped_before_the_split_so_no_text_is_in_two_splits():
    rows = review_rows(1500)
    doubled = pd.concat([rows, rows.assign(text=rows["text"].str.upper())])  # same text after lowercasing
    data = prepare(doubled, DataConfig(source="mem"))
    train, val, test = set(data.train.texts), set(data.val.texts), set(data.test.texts)
    assert not (train & test) and not (train & val) and not (val & test)
    assert data.stats["duplicates_dropped"] >= 1500
    assert len(train) + len(val) + len(test) == data.stats["rows_used"]


def test_split_is_stratified_seeded_and_fingerprinted():
    rows = review_rows(1000)
    a, b = prepare(rows, DataConfig(source="mem")), prepare(rows, DataConfig(source="mem"))
    assert a.fingerprint == b.fingerprint and a.test.texts == b.test.texts
    assert prepare(rows, DataConfig(source="mem", seed=1)).fingerprint != a.fingerprint
    share = lambda split: split.labels.mean()
    assert abs(share(a.train) - share(a.test)) < 0.03
    assert len(a.test.texts) == pytest.approx(0.33 * a.stats["rows_used"], abs=2)


def test_empty_texts_are_dropped_and_limit_applies_after_a_seeded_shuffle():
    rows = frame(["good app", "", "  ", "bad app", "fine", "awful", "nice", "poor", "great", "worst", "ok", "meh"] * 2, [1, 0] * 12)
    data = prepare(rows, DataConfig(source="mem", limit=20, test_size=0.25, val_size=0.25))
    assert data.stats["rows"] == 24 and data.stats["empty_dropped"] >= 1
    assert "" not in data.train.texts + data.val.texts + data.test.texts


def test_string_labels_need_an_explicit_map():
    rows = frame([f"text number {i}" for i in range(40)], ["pos", "neg"] * 20)
    with pytest.raises(DataError, match=r"must be binary 0/1.*data.label_map: \{neg: 0, pos: 1\}"):
        prepare(rows, DataConfig(source="mem"))
    data = prepare(rows, DataConfig(source="mem", label_map={"neg": 0, "pos": 1}))
    assert set(data.train.labels) == {0, 1}


@pytest.mark.parametrize(
    "rows, cfg, message",
    [
        (frame(["a"] * 3, [0, 1, 2]), {}, "must be binary 0/1, found \\['0', '1', '2'\\]"),
        (frame([f"t{i}" for i in range(30)], [1] * 30), {}, "only one class"),
        (pd.DataFrame({"review": ["a"], "label": [1]}), {}, "text column 'text' not found .* set data.text_column"),
        (pd.DataFrame({"text": ["a"], "y": [1]}), {}, "label column 'label' not found"),
        (frame([], []), {}, "has no rows"),
        (frame(["x", "y"], ["pos", "oops"]), {"label_map": {"pos": 1, "neg": 0}}, "values \\['oops'\\] that data.label_map"),
    ],
)
def test_bad_tables_get_specific_errors(rows, cfg, message):
    with pytest.raises(DataError, match=message):
        prepare(rows, DataConfig(source="mem", **cfg))


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found; set data.source"):
        load_data(DataConfig(source=str(tmp_path / "missing.csv")))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 bon,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not valid utf-8 .* set data.encoding"):
        load_data(DataConfig(source=str(latin)))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_data(DataConfig(source=str(empty)))
    with pytest.raises(DataError, match="unsupported type '.json'"):
        (tmp_path / "x.json").write_text("{}")
        load_data(DataConfig(source=str(tmp_path / "x.json")))


def test_tsv_and_parquet_sources(tmp_path):
    rows = review_rows(300)
    rows.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    rows.to_parquet(tmp_path / "d.parquet")
    a = load_data(DataConfig(source=str(tmp_path / "d.tsv")))
    b = load_data(DataConfig(source=str(tmp_path / "d.parquet")))
    assert a.fingerprint == b.fingerprint


def test_embedded_imdb_is_the_25000_labelled_reviews_without_html():
    imdb = read_embedded_imdb()
    assert len(imdb) == 25_000 and imdb["label"].value_counts().to_dict() == {0: 12_500, 1: 12_500}
    assert not imdb["text"].str.contains("<br />", regex=False).any()


def hub_offline(monkeypatch, cache):
    """huggingface_hub reads HF_HUB_OFFLINE / HF_HUB_CACHE into `constants` when first imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def test_hub_offline_with_nothing_cached_names_the_alternatives(tmp_path, monkeypatch):
    hub_offline(monkeypatch, tmp_path / "hub")
    with pytest.raises(DataError, match="not in the local Hugging Face cache.*`imdb`.*local"):
        load_data(DataConfig(source="hf://datasets/adkhamboy/sentiment-uz/sentiment_uz.csv"))


def test_hub_file_in_the_cache_is_used_offline(tmp_path, monkeypatch):
    # huggingface_hub's cache layout: datasets--<owner>--<repo>/{refs/main, snapshots/<commit>/<file>}
    cache = tmp_path / "hub"
    repo = cache / "datasets--adkhamboy--sentiment-uz"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    review_rows(200).to_csv(snapshot / "sentiment_uz.csv", index=False)
    hub_offline(monkeypatch, cache)
    path = download_from_hub("hf://datasets/adkhamboy/sentiment-uz/sentiment_uz.csv")
    assert path == snapshot / "sentiment_uz.csv"
    assert load_data(DataConfig(source="hf://datasets/adkhamboy/sentiment-uz/sentiment_uz.csv")).stats["rows"] == 200


def test_malformed_hub_source():
    with pytest.raises(DataError, match="expected hf://datasets/<owner>/<repo>/<file>"):
        download_from_hub("hf://datasets/only-owner")
