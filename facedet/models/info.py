"""Parameters and FLOPs of a model, in total and per module, at a given input size.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (shape-based formulas per operator;
a multiply-add counts as 2 FLOPs, the convention of Darknet's BFLOPS and of YOLOv5's GFLOPs;
element-wise ops such as activations, pooling and additions count 0, as in those tools).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class ModuleFigures:
    """One module's share: ``name`` (dotted path, "" for the whole model), ``params``, ``flops``."""

    name: str
    params: int
    flops: int


@dataclass
class ModelInfo:
    """The figures of one model at one input size (batch 1, square ``img_size``)."""

    img_size: int
    params: int
    trainable: int
    flops: int
    modules: list[ModuleFigures] = field(default_factory=list)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def summary(self) -> str:
        """One line: parameters and GFLOPs at the input size."""
        frozen = self.params - self.trainable
        extra = f" ({frozen / 1e6:.3f} M frozen)" if frozen else ""
        return (f"{self.params / 1e6:.3f} M parameters{extra}, {self.gflops:.2f} GFLOPs at "
                f"{self.img_size}x{self.img_size}")

    def table(self) -> str:
        """A text table of the per-module figures, indented by depth, then the total."""
        rows = [("module", "params (M)", "GFLOPs", "% FLOPs")]
        for m in self.modules:
            depth = m.name.count(".")
            pct = 100.0 * m.flops / self.flops if self.flops else 0.0
            rows.append(("  " * depth + m.name, f"{m.params / 1e6:.3f}", f"{m.flops / 1e9:.3f}", f"{pct:.1f}"))
        rows.append(("total", f"{self.params / 1e6:.3f}", f"{self.gflops:.3f}", "100.0"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"{r[0]:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:], widths[1:], strict=True))
                 for r in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"img_size": self.img_size, "params": self.params, "trainable": self.trainable,
                "gflops": round(self.gflops, 4),
                "modules": {m.name: {"params": m.params, "gflops": round(m.flops / 1e9, 4)} for m in self.modules}}


def model_info(model: nn.Module, img_size: int, *, depth: int = 2, in_channels: int = 3) -> ModelInfo:
    """Count parameters and the FLOPs of one forward pass of a ``(1, in_channels, img_size, img_size)``
    input; per-module figures for submodules up to ``depth`` levels below the root.

    The forward runs in eval mode without gradients on the model's device, so neither BatchNorm
    statistics nor DropBlock change; the model's training mode is restored afterwards.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_channels, img_size, img_size, device=device))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    flops_by_name = {}
    for key, ops in counts.items():
        if key == root:
            flops_by_name[""] = sum(ops.values())
        elif key.startswith(root + "."):
            flops_by_name[key[len(root) + 1 :]] = sum(ops.values())
    total = counter.get_total_flops()

    def flops_of(name: str, module: nn.Module) -> int:
        # Containers that are never called (ModuleList) get no entry of their own: sum their children.
        if name in flops_by_name:
            return flops_by_name[name]
        return sum(flops_of(f"{name}.{child}", m) for child, m in module.named_children())

    modules = []
    for name, module in model.named_modules():
        if not name or name.count(".") >= depth:
            continue
        params = sum(p.numel() for p in module.parameters())
        flops = flops_of(name, module)
        if params or flops:
            modules.append(ModuleFigures(name, params, flops))
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelInfo(img_size=img_size, params=params, trainable=trainable, flops=total, modules=modules)
