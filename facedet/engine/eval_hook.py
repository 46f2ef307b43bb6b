"""The training-time evaluation hook: evaluates the eval model with every configured evaluator,
marks the best epoch by ``train.best_metric``, keeps the COCO results json of the best epoch and a
precision-recall PNG per evaluation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from facedet.builders import EvalSpec
from facedet.engine import distributed as du
from facedet.engine.evaluate import HEADLINE, evaluate
from facedet.engine.hook_base import PRIORITY_EVAL, HookBase
from facedet.evaluation.base import build_evaluators
from facedet.evaluation.landmarks import landmark_summary
from facedet.inference.tta import TTA
from facedet.registry import ConfigError, closest

log = logging.getLogger(__name__)

# Other names accepted for ``train.best_metric``: the metric keys themselves are what metrics.json holds.
METRIC_ALIASES = {"coco_ap": "AP", "coco_ap50": "AP50", "coco_ap75": "AP75", "coco_ar": "AR"}


def resolve_metric(name: str, evaluators: Sequence[Any]) -> str:
    """The metric key ``name`` (or its alias) stands for; a ConfigError with the known names and the
    closest match when no evaluator reports it."""
    key = METRIC_ALIASES.get(name, name)
    known = [m for ev in evaluators for m in ev.metric_names]
    lower = [m for ev in evaluators for m in getattr(ev, "lower_is_better", ())]
    if key in lower:  # best.pt is the epoch where the metric is highest: an error would be kept as best
        raise ConfigError(f"train.best_metric '{name}' is lower-is-better; the best epoch is the one where the "
                          f"metric is highest. Pick one of: {', '.join(m for m in known if m not in lower)}.")
    if not known or key in known:
        return key
    choices = known + list(METRIC_ALIASES)
    guess = closest(name, choices)
    raise ConfigError(
        f"train.best_metric '{name}' is not reported by the evaluators "
        f"({', '.join(type(e).__name__ for e in evaluators)}). Known: {', '.join(choices)}."
        + (f" Did you mean '{guess}'?" if guess else "")
        + (" The WIDER FACE metrics need eval=widerface." if key.startswith("wider_") else "")
    )


class EvalHook(HookBase):
    """Evaluates the eval model (EMA when present) every ``interval`` epochs and after the last;
    marks the epoch as best when ``metric`` improves and keeps its COCO results json.

    ``evaluators`` (default: COCO on the loader's records) are all run on the same predictions;
    ``tta`` is the test-time augmentation; with ``pr_curves`` a PNG per evaluation is written to
    ``run_dir/pr_curves/epoch_NNN.png``. Writes ``trainer.metrics``, ``best_metric``,
    ``best_metrics`` and ``is_best``; evaluates ``trainer.eval_model``.
    """

    priority = PRIORITY_EVAL
    state_key = "eval"

    def __init__(self, loader: DataLoader, *, interval: int, metric: str, run_dir: Path,
                 settings: dict[str, Any], progress: bool = True, evaluators: Sequence[Any] | None = None,
                 tta: TTA | None = None, pr_curves: bool = True) -> None:
        self.loader = loader
        self.interval = max(1, interval)
        self.evaluators = list(evaluators) if evaluators is not None else build_evaluators(None, loader.dataset.records)
        self.metric = metric  # as configured (perhaps an alias); metrics carry it as a key too
        self.metric_key = resolve_metric(metric, self.evaluators)
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.progress = progress
        self.tta = tta or TTA()
        self.pr_curves = pr_curves
        self.history: list[dict[str, Any]] = []

    def after_epoch(self) -> None:
        t = self.trainer
        t.is_best = False
        done = t.epoch + 1
        if done % self.interval and done != t.max_epochs:
            return
        model = t.eval_model
        start = time.perf_counter()
        main = du.is_main_process()  # under DDP every rank evaluates its share; rank 0 writes
        png = self.run_dir / "pr_curves" / f"epoch_{done:03d}.png" if self.pr_curves and main else None
        tmp = self.run_dir / "predictions.tmp.json"
        metrics = evaluate(model, self.loader, device=t.device, amp=t.amp, settings=self.settings,
                           results_path=tmp if main else None, progress=self.progress,
                           evaluators=self.evaluators, tta=self.tta, pr_curve_path=png)
        if self.metric_key not in metrics:
            raise ConfigError(f"train.best_metric '{self.metric}' is not an evaluation metric: {sorted(metrics)}")
        metrics[self.metric] = metrics[self.metric_key]
        metrics.update(epoch=done, step=t.step, eval_seconds=round(time.perf_counter() - start, 2))
        t.metrics = metrics
        self.history.append({k: v for k, v in metrics.items() if k != "settings"})
        value = float(metrics[self.metric])
        if not math.isnan(value) and value > t.best_metric:
            t.best_metric = value
            t.is_best = True
            t.best_metrics = metrics
            if main and tmp.exists():
                tmp.replace(self.run_dir / "predictions.json")
        elif main:  # predictions.json keeps the results of the best evaluation only
            tmp.unlink(missing_ok=True)
        log.info("eval epoch %d: %s%s", done, summary_line(metrics), f" | PR curves {png}" if png else "")

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def summary_line(metrics: dict[str, Any]) -> str:
    """The headline metrics, the per-size AP50 and, when measured, the landmark errors in one line."""
    parts = [f"{k} {metrics[k]:.4f}" for k in HEADLINE if k in metrics]
    sizes = [f"{k[5:]} {metrics[k]:.3f}" for k in metrics if k.startswith("AP50_")]
    return (" ".join(parts) + (f" | AP50 by face size: {' '.join(sizes)}" if sizes else "")
            + (f" | {landmark_summary(metrics)}" if "NME_box" in metrics else ""))


def build_eval_hook(spec: EvalSpec, val_loader: DataLoader, *, run_dir: Path, settings: dict[str, Any],
                    progress: bool = True) -> EvalHook:
    """The EvalHook of a training run, from its parsed ``eval`` node (``facedet.builders.EvalSpec``)."""
    return EvalHook(val_loader, interval=spec.interval, metric=spec.best_metric, run_dir=run_dir, settings=settings,
                    progress=progress, evaluators=spec.evaluators, tta=spec.tta, pr_curves=spec.pr_curve)
