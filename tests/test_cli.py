"""The command-line tools share one style (facedet/cli/common.py): every tools/*.py is a shim of a
console script; overrides and flags; a user error is one line and exit status 2, before any work."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys

import pytest

from facedet.cli import detect, evaluate, kmeans_anchors, train
from facedet.cli.common import compose_or_exit, parse_tool_args, tool_parser

from .conftest import ROOT


def _console_scripts() -> dict[str, str]:
    """pyproject.toml's ``[project.scripts]`` (tomllib is Python 3.11+; the section is name = "target" lines)."""
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    return {k.strip(): v.strip().strip('"') for k, v in (line.split("=", 1) for line in section.splitlines())}


SCRIPTS = _console_scripts()


def test_every_tool_script_is_a_shim_of_a_console_script():
    # facedet-runtime (the torch-free runtime's CLI) has no shim: it runs where tools/ and torch are absent
    tools = {k: v for k, v in SCRIPTS.items() if v.startswith("facedet.cli.")}
    assert set(SCRIPTS) - set(tools) == {"facedet-runtime"}
    targets = {v.split(":")[0] for v in tools.values()}
    shims = sorted((ROOT / "tools").glob("*.py"))
    assert len(shims) == len(tools) == 11
    for path in shims:
        imports = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1 and imports[0].module in targets, path  # the logic lives in the package
        assert "main" in {a.name for a in imports[0].names}
    for target in SCRIPTS.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


@pytest.mark.parametrize("tool, argv, words", [
    (train, ["model.backbone.widht=0.5"], ["Could not override 'model.backbone.widht'", "Key 'widht'"]),
    (evaluate, ["eval=widerfac"], ["Could not find 'eval/widerfac'", "widerface"]),
    (detect, ["checkpoint=x.pt", "smoth=0.5"], ["Could not override 'smoth'"]),
    (kmeans_anchors, ["data=facemsk"], ["Could not find 'data/facemsk'", "facemask"]),
])
def test_a_bad_override_is_one_message_and_status_2_in_every_tool(tool, argv, words, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facedet-test"])  # Hydra tools read sys.argv: restored afterwards
    with pytest.raises(SystemExit) as e:
        tool.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("facedet: error: ") and "Traceback" not in err
    assert all(w in err for w in words) and "Config search path" not in err


def test_eval_results_flag_needs_a_path(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["facedet-eval"])
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--results"])
    assert e.value.code == 2 and "facedet: error: --results needs a path" in capsys.readouterr().err


def test_overrides_and_flags_mix_and_group_choices_are_known():
    parser = tool_parser("doc")
    parser.add_argument("--depth", type=int, default=2)
    tool = parse_tool_args(parser, ["data=facemask", "--depth", "3", "model=yolov4_tiny"], "train")
    assert tool.flags.depth == 3 and tool.flags.overrides == ["data=facemask", "model=yolov4_tiny"]
    assert tool.choices["data"] == "facemask" and tool.choices["model"] == "yolov4_tiny"
    assert "hydra" not in tool.cfg and tool.cfg == compose_or_exit(["data=facemask", "model=yolov4_tiny"])


def test_kmeans_tool_names_the_data_option_and_refuses_too_few_faces(tmp_path, capsys):
    data = [f"data.root={tmp_path / 'syn'}", "data.num_train=8", "data.num_val=2", "kmeans.generations=0",
            "kmeans.write=false"]
    assert kmeans_anchors.main(["data=synthetic", *data]) == 0
    assert "python tools/train.py data=synthetic anchors=synthetic" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        kmeans_anchors.main([*data, "kmeans.k=100000"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "facedet: error: only " in err and "kmeans.k=100000" in err


def test_the_tools_shims_run_from_a_checkout():
    """``python tools/<tool>.py --help`` for a composing tool and a Hydra one (the others are the
    same three lines, checked above)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for tool, expect in (("model_info.py", "--depth DEPTH"), ("eval.py", "== Config ==")):
        proc = subprocess.run([sys.executable, f"tools/{tool}", "--help"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and expect in proc.stdout, proc.stderr
