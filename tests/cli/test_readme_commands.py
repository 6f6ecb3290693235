"""The README's Commands table stays true: every command in it, optional parts included, is one the
``csrseg`` parser takes (running them all is the other tests' work)."""

import re
import shlex
from pathlib import Path

import pytest

from csrseg.cli.parser import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def table_commands() -> list[str]:
    """The first column of the Commands table, ``[...]`` groups opened, ``{a,b}`` choices each taken."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Commands") :].split("\n## ")[0]
    commands = []
    for cell in re.findall(r"^\| `(csrseg [^`]+)`", table, flags=re.M):
        cell = cell.replace("[", "").replace("]", "").replace("--device cuda", "--device cpu")  # no GPU here
        choice = re.search(r"\{([^}]+)\}", cell)
        options = choice.group(1).split(",") if choice else [None]
        commands += [cell if o is None else cell.replace(choice.group(0), o) for o in options]
    return commands


def test_the_table_is_found_and_lists_every_verb():
    verbs = {shlex.split(c)[1] for c in table_commands()}
    assert verbs >= {"info", "synth", "train", "eval", "browse", "convert", "predict", "export", "benchmark",
                     "ablate", "demo"}


@pytest.mark.parametrize("command", table_commands())
def test_every_command_of_the_table_parses(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(args.func)


def test_predict_does_not_track_and_track_does():
    # track shares predict's arguments; its track=True must not leak into predict's defaults
    parser = build_parser()
    assert parser.parse_args(["predict", "a.png", "--weights", "w.pt"]).track is False
    assert parser.parse_args(["track", "a.mp4", "--weights", "w.pt"]).track is True
    assert parser.parse_args(["predict", "a.mp4", "--weights", "w.pt", "--track"]).track is True
