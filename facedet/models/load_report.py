"""What a weights file gave a model: the key lists (matched, missing, unexpected, shape-mismatched)
and notes, shared by the PyTorch (``weights``) and Darknet (``darknet_weights``) loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class LoadReport:
    """What a weights file gave a model: key lists, and for Darknet files the values read."""

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key (file shape) vs (model shape)"
    notes: list[str] = field(default_factory=list)

    def summary(self, show: int = 5) -> str:
        """One paragraph: counts, the first ``show`` keys of each non-empty list, and notes."""

        def listing(xs: list[str]) -> str:
            more = f" ... (+{len(xs) - show} more)" if len(xs) > show else ""
            return ": " + ", ".join(xs[:show]) + more if xs else ""

        parts = [f"{len(self.matched)} matched"]
        for name, xs in (("missing", self.missing), ("unexpected", self.unexpected),
                         ("shape mismatch", self.mismatched)):
            parts.append(f"{len(xs)} {name}{listing(xs)}")
        text = f"weights {self.source}: " + "; ".join(parts)
        return text + "".join(f"; {n}" for n in self.notes)


def compare_state(own: dict[str, Tensor], state: dict[str, Tensor], source: str) -> LoadReport:
    """Sort the keys of ``state`` against a model's ``own`` state dict."""
    report = LoadReport(source)
    for k, v in own.items():
        if k not in state:
            report.missing.append(k)
        elif tuple(state[k].shape) != tuple(v.shape):
            report.mismatched.append(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}")
        else:
            report.matched.append(k)
    report.unexpected = [k for k in state if k not in own]
    return report
