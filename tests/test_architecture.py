"""The architecture as tests: the import-linter contracts hold with nothing ignored, every layer
of docs/ARCHITECTURE.md is a real package, and every kind of swappable part has registered names."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import facedet
from facedet.registry import ALL_REGISTRIES

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_contracts_ignore_nothing_and_cover_every_module():
    contracts = _contracts()
    assert {c["type"] for c in contracts} >= {"layers", "acyclic_siblings"}
    assert not any("ignore_imports" in c for c in contracts)
    layers = next(c for c in contracts if c["type"] == "layers")
    assert layers.get("exhaustive") is True  # a new top-level module must be placed in a layer
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    present = {m.name for m in pkgutil.iter_modules(facedet.__path__)}
    assert named == present


def test_lint_imports_keeps_every_contract():
    pytest.importorskip("importlinter")
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip("lint-imports is not installed beside this Python (pip install -e '.[dev]')")
    out = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_every_kind_of_part_has_registered_names():
    for m in pkgutil.walk_packages(facedet.__path__, "facedet."):
        if m.name.startswith("facedet.tune") and importlib.util.find_spec("optuna") is None:
            continue  # the search needs the [tune] extra; it registers no parts
        if not m.name.startswith("facedet.cli"):
            importlib.import_module(m.name)  # registration happens at import
    empty = sorted(kind for kind, reg in ALL_REGISTRIES.items() if not reg.names())
    assert not empty, f"registries with no entries: {empty}"


def test_architecture_doc_lists_every_registered_name():
    """docs/ARCHITECTURE.md's config-name table is the one ``facedet-parts`` prints (regenerate it
    with ``facedet-parts`` when a part is added or moved)."""
    from facedet.cli.parts import parts_table

    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    start = doc.index("<!-- parts-table:")
    table = doc[doc.index("\n", start) + 1:doc.index("<!-- end parts-table -->")]
    assert table == parts_table()
