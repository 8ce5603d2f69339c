"""Scripts written without spaces (Chinese, Thai): default settings train, promote and serve a model that learns.

Each set is built here: short reviews whose classes differ by their words, written without spaces.
Keras' word split made one word of each whole sentence, so a model could only memorise sentences,
and the linear reference's word features found no word twice and killed the sweep.
"""

from __future__ import annotations

import json
import random

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import yaml

import textsweep
from textsweep.config import parse_config
from textsweep.data import prepare, space_unspaced_scripts
from textsweep.errors import DataError
from textsweep.text import Vocabulary, fit_vocabulary, split_words

pytestmark = pytest.mark.e2e

# Default settings, but one short trial: what the tests shorten is the run, not what it does.
ONE_SHORT_TRIAL = {"defaults": {"epochs": 2}, "search": {"max_trials": 1}}

CHINESE = {
    "positive": ["很好", "喜欢", "精彩", "优秀", "满意", "推荐", "完美", "开心"],
    "negative": ["很差", "讨厌", "无聊", "失望", "糟糕", "垃圾", "难用", "后悔"],
}
CHINESE_NOUNS = ["应用", "游戏", "电影", "手机", "服务", "软件", "这个", "产品", "音乐", "餐厅"]
CHINESE_FILLERS = ["真的", "非常", "有点", "我觉得", "总的来说", "今天", "说实话", ""]

THAI = {
    "positive": ["ดีมาก", "ชอบ", "สนุก", "ประทับใจ", "ยอดเยี่ยม", "คุ้มค่า", "น่ารัก", "สุดยอด"],
    "negative": ["แย่", "เบื่อ", "ผิดหวัง", "ห่วย", "เกลียด", "เสียเวลา", "น่าเบื่อ", "ไม่ชอบ"],
}
THAI_NOUNS = ["แอปนี้", "เกมนี้", "หนังเรื่องนี้", "ร้านนี้", "บริการ", "โทรศัพท์", "เพลงนี้", "อาหาร"]
THAI_FILLERS = ["ฉันว่า", "จริงๆ", "มาก", "รู้สึก", "เลย", "วันนี้", "ค่ะ", "ครับ", ""]


def unspaced_reviews(words: dict, nouns: list, fillers: list, endings: list, per_class: int, seed: int = 0) -> pd.DataFrame:
    """`per_class` distinct reviews per class: filler, noun, two of the class's words, no spaces between."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for label, own_words in words.items():
        while sum(row["label"] == label for row in rows) < per_class:
            first, second = rng.sample(own_words, 2)
            text = f"{rng.choice(fillers)}{rng.choice(nouns)}{first}{rng.choice(fillers)}{second}{rng.choice(endings)}"
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": label})
    return pd.DataFrame(rows)


def chinese_reviews(per_class: int = 200) -> pd.DataFrame:
    return unspaced_reviews(CHINESE, CHINESE_NOUNS, CHINESE_FILLERS, ["", "！", "。"], per_class)


def thai_reviews(per_class: int = 200) -> pd.DataFrame:
    return unspaced_reviews(THAI, THAI_NOUNS, THAI_FILLERS, ["", "!", " 555"], per_class)


def validation_split(config: dict, frame: pd.DataFrame, source: str):
    """The sweep's own validation split (prepare is seeded) and its majority class's share."""
    prepared = prepare(frame, parse_config(config).data.model_copy(update={"source": source}))
    return prepared, float(np.bincount(prepared.val.labels).max() / len(prepared.val.labels))


def by_kind(runs: list) -> dict[str, list]:
    kinds: dict[str, list] = {}
    for found in runs:
        kinds.setdefault(found.data.tags.get("textsweep.kind"), []).append(found)
    return kinds


def served_accuracy(answer: pd.DataFrame | list, prepared) -> float:
    labels = [row["label"] for row in answer] if isinstance(answer, list) else answer["label"].tolist()
    return float(np.mean([label == prepared.classes[index] for label, index in zip(labels, prepared.val.labels)]))


# ---------------------------------------------------------------- the split (no training)


def test_characters_of_unspaced_scripts_are_words_and_spaced_scripts_keep_keras_words():
    assert split_words("很差应用,游戏这个讨厌") == ["很", "差", "应", "用", "游", "戏", "这", "个", "讨", "厌"]
    # Thai marks stay on their consonant (ที่ is one unit), and Latin words in between stay words
    assert split_words("หนังที่ดี Good film!") == ["ห", "นั", "ง", "ที่", "ดี", "good", "film"]
    assert split_words("今日はとても良い映画でした iPhone") == ["今", "日", "は", "と", "て", "も", "良", "い", "映", "画", "で",
                                                          "し", "た", "iphone"]
    assert split_words("Juda yaxshi, o'yin! Отличный фильм") == ["juda", "yaxshi", "o'yin", "отличный", "фильм"]
    assert space_unspaced_scripts("plain ascii stays") == "plain ascii stays"
    # a vocabulary saved before the rule serves as it was fitted: one word per unspaced sentence
    legacy = Vocabulary.from_json(json.dumps({"format": "textsweep.vocabulary/1", "maxlen": 3, "words": ["很好"]}))
    assert legacy.unspaced_characters is False and legacy.encode(["很好", "很"])[0].tolist() == [1]
    fitted = fit_vocabulary(["很好很好", "很差"])
    assert fitted.words == ("很", "好", "差") and Vocabulary.from_json(fitted.to_json()).unspaced_characters is True


def test_the_data_says_which_unspaced_scripts_it_holds():
    spaced = pd.DataFrame({"text": [f"a spaced text {i}" for i in range(20)], "label": ["positive", "negative"] * 10})
    prepared = prepare(pd.concat([chinese_reviews(40), thai_reviews(20), spaced]), parse_config({"name": "x"}).data)
    assert prepared.unspaced_scripts == ("Han", "Thai")  # most texts first
    assert prepared.stats["unspaced_script_rows"] == prepared.stats["rows_used"] - 20
    assert "texts use" in prepared.script_note() and "one at a time" in prepared.script_note()
    english = prepare(pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": [0, 1] * 20}),
                      parse_config({"name": "x"}).data)
    assert english.unspaced_scripts == () and english.script_note() is None and english.stats["unspaced_script_rows"] == 0


# ---------------------------------------------------------------- end to end


def test_a_chinese_set_sweeps_promotes_and_serves_with_default_settings_through_the_cli(
        tmp_path, monkeypatch, use_own_store, run_textsweep, runs_of, model_server):
    uri = use_own_store(monkeypatch, tmp_path)
    reviews = chinese_reviews()
    reviews.to_csv(tmp_path / "zh.csv", index=False)
    config = {"name": "zh-reviews", "data": {"source": "zh.csv"}, **ONE_SHORT_TRIAL}
    (tmp_path / "zh.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))

    swept = run_textsweep(["sweep", "--config", "zh.yaml", "--quiet"], tmp_path)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "Traceback" not in swept.stderr
    assert "texts use Han (written without spaces between words): the word tokenizer reads those characters" in swept.stderr
    assert "linear reference (TF-IDF word+char n-grams, logistic regression): val_accuracy" in swept.stdout

    prepared, majority = validation_split(config, pd.read_csv(tmp_path / "zh.csv"), "zh.csv")
    runs = by_kind(runs_of("zh-reviews")[1])
    (sweep_run,), (reference,), (trial,) = runs["sweep"], runs["reference"], runs["trial"]
    assert sweep_run.info.status == "FINISHED" and trial.info.status == "FINISHED"
    assert sweep_run.data.params["data_unspaced_script_rows"] == str(prepared.stats["rows_used"])
    assert (trial.data.params["tokenizer"], trial.data.params["lstm_out"]) == ("word", "196")  # the defaults
    assert trial.data.metrics["best_val_accuracy"] > majority + 0.2, (trial.data.metrics, majority)
    # the reference fitted on character n-grams and says why the word features are left out
    assert reference.info.status == "FINISHED" and reference.data.metrics["val_accuracy"] > majority
    assert reference.data.params["features"] == "char"
    assert "no word appears in 2 training texts" in reference.data.params["word_features"]
    vocabulary = json.loads(mlflow.artifacts.load_text(f"runs:/{trial.info.run_id}/tokenizer/vocabulary.json"))
    assert vocabulary["unspaced_characters"] is True and all(len(word) == 1 for word in vocabulary["words"])

    promoted = run_textsweep(["promote", "--config", "zh.yaml"], tmp_path)
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-3000:]
    champion = "models:/zh-reviews@champion"
    with model_server(champion, uri, tmp_path) as url:
        answered = requests.post(f"{url}/invocations", json={"inputs": {"text": prepared.val.texts}}, timeout=60)
        assert answered.status_code == 200, answered.text
        assert served_accuracy(answered.json()["predictions"], prepared) > majority + 0.2
        refused = requests.post(f"{url}/invocations", json={"inputs": {"text": ["很好", None]}}, timeout=60)
    assert refused.status_code == 400
    # in process, the same rule: what the server refuses, predict refuses, with the same words
    problem = "'text' must hold strings; row 1 is missing (null)"
    assert refused.json()["message"].startswith(problem)
    with pytest.raises(DataError) as in_process:
        textsweep.load_model(champion).predict(["很好", None])
    assert str(in_process.value).startswith(problem) and "Pass each text as a Python string" in str(in_process.value)


def test_a_thai_set_sweeps_promotes_and_serves_with_default_settings_through_the_api(
        tmp_path, monkeypatch, capfd, use_own_store, runs_of):
    use_own_store(monkeypatch, tmp_path)
    reviews = thai_reviews()
    config = {"name": "th-reviews", **ONE_SHORT_TRIAL}
    result = textsweep.sweep(config, data=reviews, quiet=True)
    assert "texts use Thai (written without spaces between words)" in capfd.readouterr().err

    prepared, majority = validation_split(config, reviews, "dataframe")
    runs = by_kind(runs_of("th-reviews")[1])
    (sweep_run,), (reference,), (trial,) = runs["sweep"], runs["reference"], runs["trial"]
    assert sweep_run.info.status == "FINISHED" and trial.info.status == "FINISHED"
    assert result.leaderboard.iloc[0]["best_val_accuracy"] > majority + 0.2
    # " 555" (laughter) is a word of its own here, so the reference keeps its word features
    assert reference.info.status == "FINISHED" and reference.data.params["features"] == "word+char"
    assert result.reference["val_accuracy"] == reference.data.metrics["val_accuracy"] > majority

    result.promote()
    champion = textsweep.load_model("models:/th-reviews@champion")  # the registered pyfunc, as served
    answer = champion.predict(prepared.val.texts)
    assert list(answer.columns) == ["text", "label", "probability", "probability_negative", "probability_positive"]
    assert served_accuracy(answer, prepared) > majority + 0.2
    # None and numbers: refused in process as the server refuses them (serving.texts_of's rule)
    for model in (champion, result.best_model()):
        with pytest.raises(DataError, match=r"'text' must hold strings; row 0 is 3 \(int\), and 1 more rows"):
            model.predict([3, None, "ดีมาก"])
        with pytest.raises(DataError, match="'text' must hold strings; row 1 is missing"):
            model.predict(pd.DataFrame({"text": ["ดีมาก", None]}))
        with pytest.raises(DataError, match="expected a table with a 'text' column, got NoneType"):
            model.predict(None)
