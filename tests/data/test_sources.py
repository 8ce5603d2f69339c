"""Reading `data.source`: local tables and their errors, the embedded reviews, the Hugging Face Hub."""

import pytest

from textsweep.config import DataConfig
from textsweep.data import download_from_hub, load_data, read_embedded_imdb
from textsweep.errors import DataError


def test_file_errors(review_rows, tmp_path):
    with pytest.raises(DataError, match="not found; set data.source"):
        load_data(DataConfig(source=str(tmp_path / "missing.csv")))
    review_rows(50).to_csv(tmp_path / "reviews.csv", index=False)
    with pytest.raises(DataError, match=r"is a directory, not a file; set data.source to a .csv/.tsv/.parquet file in it, e.g. '.*reviews.csv'"):
        load_data(DataConfig(source=str(tmp_path)))
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


def test_tsv_and_parquet_sources(review_rows, tmp_path):
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


def test_hub_file_in_the_cache_is_used_offline(review_rows, tmp_path, monkeypatch):
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
