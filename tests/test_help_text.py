"""``--help`` prints plain words: no reStructuredText markup from the docstrings behind it."""

from __future__ import annotations

import re

import pytest

from dcsm_lightning.app.cli import main
from dcsm_lightning.app.help_text import plain_text
from dcsm_lightning.data import SyntheticDataModule, TaggedImagesDataModule, VOCDataModule
from dcsm_lightning.data.datamodule import SegmentationDataModule
from dcsm_lightning.models import MultiLabelFCN, SegmentationNet

#: Markup a reader should never see: literals, roles, links, interpreted text.
MARKUP = re.compile(r"``|:[a-z]+:`|`[^`\n]*`_?")


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("a ``vgg16`` or ``vgg_small`` backbone", "a vgg16 or vgg_small backbone"),
        (':class:`~dcsm_lightning.saliency.DCSM` (``"auto"``)', 'DCSM ("auto")'),
        (":class:`dcsm_lightning.saliency.DCSM`", "dcsm_lightning.saliency.DCSM"),
        (":attr:`results <dcsm_lightning.SaliencySegmentation.results>`", "results"),
        (":py:meth:`~Trainer.fit` and :mod:`torch`", "fit and torch"),
        ("see `jsonargparse <https://jsonargparse.rtfd.io>`_.", "see jsonargparse (https://jsonargparse.rtfd.io)."),
        ("``max_epochs\n= 1000`` and `x`", "max_epochs\n= 1000 and x"),
        ("plain <words> and a: colon", "plain <words> and a: colon"),
    ],
)  # fmt: skip
def test_plain_text_shows_what_sphinx_would(text, plain):
    assert plain_text(text) == plain


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """The command line, built once: a tiny ``synth`` run returns it with every parser."""
    out = tmp_path_factory.mktemp("synth") / "voc"
    return main(["synth", "--out", str(out), "--num_train=1", "--num_val=1", "--size=32"])


def test_no_subcommand_help_shows_markup(cli):
    helps = {"dcsm-lightning": cli.parser.format_help()}
    helps.update({name: parser.format_help() for name, parser in cli._subcommand_parsers.items()})
    assert set(helps) >= {"fit", "validate", "predict", "compare", "pseudo-labels", "tune"}
    for name, text in helps.items():
        found = MARKUP.findall(text)
        assert not found, f"{name} --help shows {found[:5]}"
    # the cleaning keeps the words: Lightning's literal ``"auto"`` stays as "auto"
    assert 'Default: "auto"' in helps["fit"]


@pytest.mark.parametrize(
    "cls", [MultiLabelFCN, SegmentationNet, SyntheticDataModule, VOCDataModule,
            TaggedImagesDataModule, SegmentationDataModule],
)  # fmt: skip
def test_class_help_shows_no_markup(cli, cls):
    # what `--model.help NAME` / `--data.help NAME` print: a parser of the CLI's class
    parser = type(cli.parser)(description=f"Help for {cls.__name__}")
    parser.add_class_arguments(cls, "model")
    text = parser.format_help()
    assert "--model.init_args" not in text and "--model." in text
    found = MARKUP.findall(text)
    assert not found, f"{cls.__name__} help shows {found[:5]}"


def test_model_help_by_short_name_is_plain(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--model.help", "MultiLabelFCN"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "registered backbone name (vgg16, vgg_small)" in " ".join(text.split())
    assert not MARKUP.findall(text)
