"""The README's quickstart commands run as written, from an empty folder (shrunk to seconds by
options appended after them; later options win) and leave the table and the masks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from demo_config import SHRINK

from dcsm_lightning.app.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_commands() -> list[list[str]]:
    """The commands of the README's block marked ``<!-- quickstart``, one argv each."""
    text = README.read_text()
    block = re.search(r"<!-- quickstart.*?-->\n```bash\n(.*?)```", text, flags=re.S)
    assert block, "README.md has no quickstart block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip()]


def test_the_readme_quickstart_runs_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    commands = quickstart_commands()
    assert [c[:2] for c in commands] == [
        ["dcsm-lightning", "fit"], ["dcsm-lightning", "compare"], ["dcsm-lightning", "predict"]
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for command in commands:
        main([*command[1:], *SHRINK])
    assert "dcsm+crf" in capsys.readouterr().out  # compare printed its table
    run = tmp_path / "runs" / "synthetic" / "version_0"  # the README: everything lands here
    assert (run / "compare" / "comparison.csv").is_file()
    assert (run / "compare" / "comparison.png").is_file()
    assert (run / "compare" / "per_class.png").is_file()
    assert len(list((run / "predict" / "masks").glob("*.png"))) == 8
    assert (run / "predict" / "grid.png").is_file()  # the labelled grid
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["synthetic"]
