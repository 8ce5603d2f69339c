import numpy as np
import pandas as pd
import pytest

from textsweep.config import DataConfig
from textsweep.data import clean_texts, prepare
from textsweep.errors import DataError


def test_cleaning_keeps_seed_a_quirks():
    cleaned = clean_texts(pd.Series(["O'yin ZO'R!", "a[b]_c`d\\e^f", "Yaxshi, 10/10 :)"])).tolist()
    # the apostrophe of o' goes; A-z keeps [ \ ] ^ _ and the backtick
    assert cleaned == ["oyin zor", "a[b]_c`d\\e^f", "yaxshi 1010 "]


def frame(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


def test_duplicates_are_dropped_before_the_split_so_no_text_is_in_two_splits(review_rows):
    rows = review_rows(1500)
    doubled = pd.concat([rows, rows.assign(text=rows["text"].str.upper())])  # same text after lowercasing
    data = prepare(doubled, DataConfig(source="mem"))
    train, val, test = set(data.train.texts), set(data.val.texts), set(data.test.texts)
    assert not (train & test) and not (train & val) and not (val & test)
    assert data.stats["duplicates_dropped"] >= 1500
    assert len(train) + len(val) + len(test) == data.stats["rows_used"]


def test_split_is_stratified_seeded_and_fingerprinted(review_rows):
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


@pytest.fixture
def three_class_rows(review_rows):
    """`three_class_rows(n)`: `n` reviews labelled negative, neutral, positive in turn."""

    def rows(n=600):
        return review_rows(n).assign(label=[("negative", "neutral", "positive")[i % 3] for i in range(n)])

    return rows


def labels_as_classes(data, split="train"):
    part = getattr(data, split)
    return [data.classes[i] for i in part.labels]


def test_string_labels_are_classes_in_sorted_order(three_class_rows):
    rows = three_class_rows()
    data = prepare(rows, DataConfig(source="mem"))
    assert data.classes == ["negative", "neutral", "positive"]
    assert data.train.labels.dtype == np.int64 and set(data.train.labels) == {0, 1, 2}
    # each text keeps its own label through shuffle, cleaning and split
    by_text = dict(zip(clean_texts(rows["text"], "unicode"), rows["label"]))
    assert labels_as_classes(data, "test") == [by_text[t] for t in data.test.texts]
    assert {name: int(np.sum(data.test.labels == i)) for i, name in enumerate(data.classes)}["neutral"] > 50


def test_data_classes_fixes_the_order(three_class_rows):
    data = prepare(three_class_rows(), DataConfig(source="mem", classes=["positive", "neutral", "negative"]))
    assert data.classes == ["positive", "neutral", "negative"]
    sorted_order = prepare(three_class_rows(), DataConfig(source="mem"))

    def pairs(prepared):
        return sorted((t, c) for s in ("train", "val", "test") for t, c in zip(getattr(prepared, s).texts, labels_as_classes(prepared, s)))

    assert pairs(data) == pairs(sorted_order)  # same texts with the same classes, other indices
    positive = [i for i, c in enumerate(labels_as_classes(data)) if c == "positive"]
    assert positive and set(data.train.labels[positive]) == {0}
    with pytest.raises(DataError, match=r"values \['neutral'\] that are not in data.classes \['negative', 'positive'\]"):
        prepare(three_class_rows(), DataConfig(source="mem", classes=["negative", "positive"]))


def test_label_map_gives_class_indices_and_names_each_class_by_its_first_key():
    rows = frame([f"text number {i}" for i in range(40)], ["pos", "neg", "positive", "neg"] * 10)
    data = prepare(rows, DataConfig(source="mem", label_map={"pos": 1, "positive": 1, "neg": 0}))
    assert data.classes == ["neg", "pos"] and set(data.train.labels) == {0, 1}
    assert labels_as_classes(data).count("pos") == labels_as_classes(data).count("neg")


def test_zero_one_and_boolean_labels_are_used_as_they_are(review_rows):
    rows = review_rows(400)
    ints = prepare(rows, DataConfig(source="mem"))
    assert ints.classes == [0, 1] and ints.cleaning == "unicode"
    floats = prepare(rows.assign(label=rows["label"].astype(float)), DataConfig(source="mem"))
    booleans = prepare(rows.assign(label=rows["label"] == 1), DataConfig(source="mem"))
    assert floats.classes == [0, 1] and booleans.classes == [False, True]
    assert ints.fingerprint == floats.fingerprint == booleans.fingerprint  # same indices, same rows
    assert labels_as_classes(booleans, "val") == [bool(label) for label in labels_as_classes(ints, "val")]


def test_a_class_too_small_for_every_split_is_named_with_its_count(three_class_rows):
    rows = three_class_rows(300)
    rows.loc[rows["label"] == "neutral", "label"] = "negative"
    rows.loc[0, "label"] = "neutral"
    with pytest.raises(DataError, match=r"class 'neutral' has 1 row after cleaning .* needs at least 10 rows"):
        prepare(rows, DataConfig(source="mem"))


def test_unicode_cleaning_keeps_every_script_and_word_internal_apostrophes():
    texts = ["Отличное приложение!", "O'yin ZO‘R, oʻyin!", "हिन्दी अच्छा", "'Quoted' don't__stop", "ﬁne ２０２４", None]
    assert clean_texts(texts, "unicode").tolist() == [
        "отличное приложение", "o'yin zo'r o'yin", "हिन्दी अच्छा", "quoted don't stop", "fine 2024", "",
    ]
    assert clean_texts(texts[:2], "seed_a").tolist() == [" ", "oyin zor oyin"]  # Cyrillic is dropped
    assert clean_texts(texts[:1], "none").tolist() == ["Отличное приложение!"]
    assert clean_texts(texts[:2]).tolist() == clean_texts(texts[:2], "seed_a").tolist()  # serving's call


def test_cleaning_that_empties_most_texts_names_the_setting():
    rows = frame([f"Отличное приложение {'о' * i}" for i in range(1, 31)] + [f"good {i}" for i in range(10)], [0, 1] * 20)
    with pytest.raises(DataError, match=r"data.cleaning 'seed_a' empties 30 of 40 texts .*set data.cleaning to unicode"):
        prepare(rows, DataConfig(source="mem", cleaning="seed_a"))
    assert "отличное приложение ооо" in {t for s in ("train", "val", "test") for t in getattr(prepare(rows, DataConfig(source="mem")), s).texts}


@pytest.mark.parametrize(
    "rows, cfg, message",
    [
        (frame([f"t{i}" for i in range(30)], [1] * 30), {}, "only one class \\(1: 30 rows\\)"),
        (frame(["a", "b", "c"], [0, 1, 2]), {}, "class 0 has 1 row after cleaning"),
        (pd.DataFrame({"review": ["a"], "label": [1]}), {}, "text column 'text' not found .* set data.text_column"),
        (pd.DataFrame({"text": ["a"], "y": [1]}), {}, "label column 'label' not found"),
        (frame([], []), {}, "has no rows"),
        (frame(["x", "y"], ["pos", "oops"]), {"label_map": {"pos": 1, "neg": 0}}, "values \\['oops'\\] that data.label_map"),
    ],
)
def test_bad_tables_get_specific_errors(rows, cfg, message):
    with pytest.raises(DataError, match=message):
        prepare(rows, DataConfig(source="mem", **cfg))


# ---------------------------------------------------------------- one label, one class


def numbered(n: int) -> list[str]:
    return [f"review number {i} {'good' if i % 2 else 'bad'}" for i in range(n)]


def test_labels_that_differ_only_by_type_are_one_class():
    """1, "1", 1.0 and True in one column (a DataFrame built from two sources) are class 1, 0 and "0" class 0."""
    ones, zeros = [1, "1", 1.0, True, " 1"], [0, "0", 0.0, False, "0.0"]
    labels = [(ones if i % 2 else zeros)[(i // 2) % 5] for i in range(200)]
    data = prepare(frame(numbered(200), pd.Series(labels, dtype=object)), DataConfig(source="mem"))
    plain = prepare(frame(numbered(200), [i % 2 for i in range(200)]), DataConfig(source="mem"))
    assert data.classes == [0, 1] and type(data.classes[1]) is int
    assert data.fingerprint == plain.fingerprint  # the same rows with the same classes
    # strings that spell numbers stay strings when the column holds no number
    strings = prepare(frame(numbered(200), [str(i % 2) for i in range(200)]), DataConfig(source="mem"))
    assert strings.classes == ["0", "1"]
    # numbers merge with their spelling; other strings stay classes of their own
    mixed = prepare(frame(numbered(300), pd.Series([[2, "2", "neutral"][i % 3] for i in range(300)], dtype=object)),
                    DataConfig(source="mem"))
    assert mixed.classes == [2, "neutral"]


def test_labels_that_still_differ_only_by_type_are_refused_with_the_values_and_the_fix():
    labels = pd.Series([[True, "True", False][i % 3] for i in range(90)], dtype=object)
    with pytest.raises(DataError, match=r"label column 'label' holds True \(bool\) and 'True' \(str\), labels that differ "
                                        r"only by type: one class or two\? Make the column one type \(e.g. "
                                        r"frame\['label'\] = frame\['label'\].astype\(str\)\), or set data.label_map"):
        prepare(frame(numbered(90), labels), DataConfig(source="mem"))
    # label_map matches labels by their text: it says they are one class
    mapped = prepare(frame(numbered(90), labels), DataConfig(source="mem", label_map={"False": 0, "True": 1}))
    assert mapped.classes == ["False", "True"] and np.bincount(mapped.train.labels)[1] > np.bincount(mapped.train.labels)[0]


def test_label_map_number_keys_match_labels_by_text_and_name_the_classes_as_written():
    numbers = prepare(frame(numbered(90), [i % 3 for i in range(90)]), DataConfig(source="mem", label_map={0: 0, 1: 1, 2: 1}))
    assert numbers.classes == [0, 1] and type(numbers.classes[0]) is int
    spelled = prepare(frame(numbered(90), [str(i % 3) for i in range(90)]), DataConfig(source="mem", label_map={0: 0, 1: 1, 2: 1}))
    assert spelled.fingerprint == numbers.fingerprint


def test_a_dataframe_mixing_1_and_string_1_trains_one_class_and_mlflow_holds_two_classes(review_rows, store):
    import json

    import mlflow

    import textsweep

    rows = review_rows(300)
    mixed = rows.assign(label=pd.Series([label if i % 2 else str(label) for i, label in enumerate(rows["label"])], dtype=object))
    tiny = {"name": "mixed-labels", "defaults": {"max_features": 300, "embed_dim": 4, "lstm_out": 4, "epochs": 1,
                                                  "recurrent_dropout": 0.0}}
    result = textsweep.train(tiny, data=mixed)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED" and json.loads(run.data.params["data_classes"]) == [0, 1]
    vocabulary = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/tokenizer/vocabulary.json"))
    assert vocabulary["classes"] == [0, 1]
    refused = rows.assign(label=pd.Series([bool(label) if i % 2 else str(bool(label)) for i, label in enumerate(rows["label"])],
                                          dtype=object))
    with pytest.raises(DataError, match=r"holds .* labels that differ only by type"):
        textsweep.train(tiny | {"name": "refused-labels"}, data=refused)
    assert mlflow.get_experiment_by_name("refused-labels") is None  # refused before any run


# ---------------------------------------------------------------- cleaning that empties the texts


def test_texts_that_clean_to_nothing_name_a_cleaning_that_keeps_them():
    emoji = frame([f"{'😀👍' * (i % 4 + 1)}{'🎉' * (i % 7)}" for i in range(60)], [0, 1] * 30)
    with pytest.raises(DataError) as unicode_empties:
        prepare(emoji, DataConfig(source="mem"))
    message = str(unicode_empties.value)
    assert message.startswith("data.cleaning 'unicode' empties 60 of 60 texts")
    assert message.endswith("set data.cleaning to none (the text as given)")  # not the mode that emptied them
    with pytest.raises(DataError, match=r"set data.cleaning to none \(the text as given\)$"):
        prepare(emoji, DataConfig(source="mem", cleaning="seed_a"))
    assert prepare(emoji, DataConfig(source="mem", cleaning="none")).stats["rows_used"] > 20
