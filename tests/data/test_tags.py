"""Tag files: CSV, JSON and cls_labels.npy read into the same rows; each bad file gets one line."""

from __future__ import annotations

import numpy as np
import pytest

from dcsm_lightning.data import VOC_CLASSES, TagRow, read_tag_file
from dcsm_lightning.data.tags import check_tag_names, multi_hot, split_tags


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_csv_separators_quotes_header_order_and_empty_tags(tmp_path):
    path = _write(
        tmp_path / "tags.csv",
        "\ufefftags,image,note\n"  # a BOM and the columns in another order, an extra column
        "cat dog,a.jpg,x\n"
        "\n"
        "cat;dog,sub/b.jpg,\n"
        '"cat | dog ; bird",c,\n'
        ",empty.png,\n",
    )
    rows = read_tag_file(path)
    assert rows == [
        TagRow("a.jpg", ("cat", "dog"), 2),
        TagRow("sub/b.jpg", ("cat", "dog"), 4),
        TagRow("c", ("cat", "dog", "bird"), 5),
        TagRow("empty.png", (), 6),
    ]


def test_json_lists_and_strings(tmp_path):
    path = _write(tmp_path / "tags.json", '{"a.jpg": ["cat", "dog"], "b": "bird|cat", "c": []}')
    assert [(r.image, r.names) for r in read_tag_file(path)] == [
        ("a.jpg", ("cat", "dog")),
        ("b", ("bird", "cat")),
        ("c", ()),
    ]


def test_cls_labels_npy_of_psa_and_irn(tmp_path):
    vectors = {"2007_000032": np.eye(20)[0] + np.eye(20)[14], "2007_000039": np.eye(20)[19]}
    np.save(tmp_path / "cls_labels.npy", vectors)
    rows = read_tag_file(tmp_path / "cls_labels.npy")
    assert [(r.image, r.names) for r in rows] == [
        ("2007_000032", ("aeroplane", "person")),
        ("2007_000039", ("tvmonitor",)),
    ]
    check_tag_names(rows, VOC_CLASSES, "cls_labels.npy")
    with pytest.raises(ValueError, match=r"entry 1 \('2007_000032'\): 20 values for 3 classes"):
        read_tag_file(tmp_path / "cls_labels.npy", class_names=["a", "b", "c"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.csv", "", r"t.csv is empty"),
        ("t.csv", "image,tags\n", r"t.csv has no rows"),
        ("t.csv", "a.jpg,cat\n", r"t.csv line 1: expected a header row"),
        ("t.csv", "image,tags\na.jpg,cat\nb.jpg\n", r"t.csv line 3: expected the columns"),
        ("t.csv", "image,tags\n,cat\n", r"t.csv line 2: the 'image' column is empty"),
        ("t.csv", 'image,tags\n"a.jpg,cat\n', r"t.csv line \d: not valid CSV"),
        ("t.csv", "image,tags\na.jpg,cat\nb.jpg,dog\na.jpg,dog\n", r"line 4: 'a.jpg' .*line 2"),
        ("t.csv", b"image,tags\na.jpg,cat\nb\xe9.jpg,dog\n", r"t.csv line 3: not valid UTF-8"),
        ("t.json", '{"a": ["cat"],\n "b": [1]}', r"t.json entry 2 \('b'\): expected a list"),
        ("t.json", '{"a": ["cat"],\n "b": ["cat"\n}', r"t.json line 3: not valid JSON"),
        ("t.json", '{"a": ["cat"], "a": ["dog"]}', r"'a' is listed twice"),
        ("t.json", '["a.jpg"]', r"t.json: expected an object"),
        ("t.npy", b"not numpy", r"t.npy: not a cls_labels.npy"),
        ("t.txt", "a cat", r"unknown suffix '.txt'"),
    ],
)
def test_bad_tag_files_name_the_file_and_line(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        read_tag_file(_write(tmp_path / name, content))


def test_missing_tag_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tag file .*nope.csv does not exist"):
        read_tag_file(tmp_path / "nope.csv")


def test_unknown_class_names_the_line_and_suggests(tmp_path):
    rows = read_tag_file(_write(tmp_path / "t.csv", "image,tags\na.jpg,cat\nb.jpg,cat dgo\n"))
    with pytest.raises(ValueError, match=r"t.csv line 3: unknown class 'dgo' .*did you mean 'dog'"):
        check_tag_names(rows, ["cat", "dog"], tmp_path / "t.csv")


def test_split_and_multi_hot():
    assert split_tags("  a;b|c  d ") == ("a", "b", "c", "d")
    assert split_tags("") == ()
    np.testing.assert_array_equal(multi_hot(("c", "a"), ["a", "b", "c"]), [1, 0, 1])
    assert multi_hot((), ["a"]).dtype == np.float32
