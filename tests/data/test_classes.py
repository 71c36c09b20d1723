from __future__ import annotations

import pytest

from dcsm_lightning.data import SYNTHETIC_CLASSES, VOC_CLASSES, check_class_names


def test_voc_classes_are_the_twenty_in_label_order():
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane"
    assert VOC_CLASSES[14] == "person"  # mask value 15
    assert VOC_CLASSES[-1] == "tvmonitor"
    assert check_class_names(VOC_CLASSES) == VOC_CLASSES


def test_synthetic_classes_are_valid_and_at_least_six():
    assert len(SYNTHETIC_CLASSES) >= 6
    assert check_class_names(list(SYNTHETIC_CLASSES)) == SYNTHETIC_CLASSES


@pytest.mark.parametrize(
    ("names", "needle"),
    [
        ([], "empty"),
        (["cat", "cat"], "twice"),
        (["cat", ""], "blank"),
        (["cat", " dog"], "whitespace"),
        (["cat", "do\ng"], "control"),
        (["cat", "a\tb"], "control"),
        (["background", "cat"], "background"),
        (["cat", 3], "string"),
        ("cat", "list"),
        ([f"c{i}" for i in range(255)], "at most"),
    ],
)
def test_invalid_names_raise_naming_the_field(names, needle):
    with pytest.raises(ValueError, match="my_field") as info:
        check_class_names(names, field="my_field")
    assert needle in str(info.value)


def test_names_for_classes_defaults_and_refuses_a_wrong_count():
    from dcsm_lightning.data.classes import names_for_classes
    from dcsm_lightning.models import MultiLabelFCN, SegmentationNet

    assert names_for_classes(None, 2) == ["class_0", "class_1"]
    assert names_for_classes(("a", "b"), 2) == ["a", "b"]
    for build in (
        lambda: names_for_classes(["a"], 2),
        lambda: MultiLabelFCN(num_classes=2, backbone="vgg_small", class_names=["a"]),
        lambda: SegmentationNet(num_classes=2, backbone="vgg_small", class_names=["a"]),
    ):
        with pytest.raises(ValueError, match="class_names has 1 names but num_classes is 2"):
            build()
