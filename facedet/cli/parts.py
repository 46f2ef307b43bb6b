"""``facedet-parts``: every registered name of every kind, with the code behind it.

A config node ``{type: NAME, ...}`` under a config group is built from one registry; this lists
each registry's names and the module and object each name builds, as the markdown table in
docs/ARCHITECTURE.md ("Where the code behind a config name lives"), which a test keeps equal to
this output.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import pkgutil
from typing import Any

import facedet
from facedet import registry

# Where each kind of part is named in the configs (the first hop of "config name -> code").
CONFIG_PLACES = {
    "backbone": "model.backbone.type",
    "neck": "model.neck.type",
    "head": "model.head.type",
    "loss": "model.loss.type",
    "landmark_loss": "model.loss.landmark_loss.type",
    "distill_loss": "distill.type",
    "assigner": "model.loss.assigner.type",
    "objectness_miner": "model.loss.obj_mining.type",
    "postprocessor": "model.postprocess.type",
    "activation": "model.backbone.act, model.neck.act (values)",
    "pool": "model.neck.spp (value)",
    "dataset": "data.train.type, data.val.type",
    "reader": "data.train.type, data.val.type (read by the dataset of that name)",
    "transform": "aug.train[].type, aug.val[].type",
    "dataset_wrapper": "aug.oversample, aug.mosaic, aug.copy_paste, aug.mixup (the key is the name)",
    "evaluator": "eval.evaluators.<key>.type",
    "optimizer": "optim.type",
    "schedule": "schedule.type",
    "hook": "aug.close_mosaic, aug.multi_scale, aug.sat, ... (the key is the name)",
}


def import_all_parts() -> None:
    """Import every module below the CLI, so that every part has registered itself."""
    for m in pkgutil.walk_packages(facedet.__path__, "facedet."):
        if not m.name.startswith("facedet.cli"):
            importlib.import_module(m.name)


def _where(obj: Any) -> str:
    if isinstance(obj, functools.partial):  # an activation with its arguments bound
        args = ", ".join([*map(repr, obj.args), *(f"{k}={v!r}" for k, v in obj.keywords.items())])
        return f"`{obj.func.__module__}.{obj.func.__qualname__}({args})`"
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    module = inspect.getmodule(target)
    name = getattr(target, "__qualname__", type(target).__name__)
    path = module.__name__.replace(".", "/") + ".py" if module else "?"
    return f"`{path}` `{name}`"


def parts_table() -> str:
    """The markdown table: kind, where configs name it, registered name, file and object."""
    import_all_parts()
    # facedet's own registries (the module-level ones), not those a user or a test may add
    kinds = {r.kind: r for r in vars(registry).values() if isinstance(r, registry.Registry)}
    lines = ["| kind | named in the config at | name | code |", "| --- | --- | --- | --- |"]
    for kind in sorted(kinds):
        reg = kinds[kind]
        for name in reg.names():
            lines.append(f"| {kind} | {CONFIG_PLACES.get(kind, '?')} | `{name}` | {_where(reg.get(name))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    print(parts_table(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
