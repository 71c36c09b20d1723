"""Help in plain words: the reStructuredText of docstrings, cleaned where ``--help`` prints it.

jsonargparse builds every option's help from the docstrings of the classes and methods behind
it (ours, Lightning's ``Trainer``, torch's optimizers), which are written for Sphinx:
double-backtick literals, cross-reference roles (class, func, attr, ...) and hyperlinks. The
docstrings stay as they are (the documentation site renders them); :class:`PlainHelpParser`
prints them through :class:`PlainHelpFormatter`, which turns the markup into the words Sphinx
would show. It is the parser class of :class:`~dcsm_lightning.app.cli.DCSMLightningCLI`, so
every subcommand's ``--help`` and ``--model.help CLASS`` (which builds a parser of the same
class) are covered.
"""

from __future__ import annotations

import re
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser

__all__ = ["PlainHelpFormatter", "PlainHelpParser", "plain_text"]

#: Sphinx cross-references: a role (optionally with a domain) and its backticked target.
_ROLE = re.compile(r":(?:[\w-]+:)?[\w-]+:`([^`]+)`")
#: a target written as "text <target>": the text is what is shown.
_TITLED = re.compile(r"^(.*?)\s*<[^<>]+>$", re.S)
#: a hyperlink (backticked "text <url>" followed by underscores): shown as "text (url)".
_LINK = re.compile(r"`([^`<]+?)\s*<([^<>`]+)>`_{1,2}")
_LITERAL = re.compile(r"``(.+?)``", re.S)
#: interpreted text (single backticks, the default role) and named links.
_INTERPRETED = re.compile(r"`([^`]+)`_{0,2}")


def _role_text(match: re.Match[str]) -> str:
    body = match.group(1)
    titled = _TITLED.match(body)
    if titled:
        return titled.group(1)
    if body.startswith("~"):  # Sphinx shows the last component only
        return body[1:].rsplit(".", 1)[-1]
    return body.lstrip("!.")


def plain_text(text: str) -> str:
    """``text`` with reStructuredText inline markup replaced by what a reader should see.

    A role with a title shows the title; a role whose target starts with a tilde shows the
    target's last dotted part, any other role its target; a literal and interpreted text lose
    their backticks; a hyperlink becomes "text (url)". Other text is unchanged
    (tests/test_help_text.py shows each case).
    """
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1 (\2)", text)
    return _INTERPRETED.sub(r"\1", text)


class PlainHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter (types, defaults) printing :func:`plain_text`."""

    def start_section(self, heading: str | None) -> None:
        super().start_section(plain_text(heading) if heading else heading)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain_text(text), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain_text(text), width, indent)


class PlainHelpParser(LightningArgumentParser):
    """LightningCLI's parser whose help is printed by :class:`PlainHelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)
