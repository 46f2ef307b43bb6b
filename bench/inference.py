"""Inference speed of the light models on the CPU: PyTorch eager against ONNX Runtime.

Both run the same function, the network plus box decoding (``facedet.export.onnx.ExportWrapper``
without NMS, as exported), so the figures compare the two runtimes and not post-processing. Per
(model, size): batch-1 latency (median and quartiles) and images/s at ``--batch``.

    python bench/inference.py                                      # light models at 320 and 640
    python bench/inference.py --model yolov4_nano --size 320 --runs 50

Needs the [export] extra (onnx, onnxscript, onnxruntime) for the ONNX Runtime column; without it
only PyTorch is measured. Models are built with random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CONFIGS, print_header  # noqa: E402
from facedet.export.onnx import ExportWrapper, export_onnx  # noqa: E402
from facedet.models import build_detector  # noqa: E402
from facedet.models.info import model_info  # noqa: E402

LIGHT = ["yolov4_nano", "mobilenetv3_yolo", "mobilenetv2_yolo", "yolov4_tiny"]


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def describe(times: list[float], batch: int) -> str:
    q1, med, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return f"{med * 1e3:7.1f} ms ({q1 * 1e3:.0f}-{q3 * 1e3:.0f})" if batch == 1 else f"{batch / med:7.1f} img/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=LIGHT, help="model configs (configs/model/*.yaml)")
    ap.add_argument("--size", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--batch", type=int, default=8, help="batch size of the throughput figure")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per figure")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both runtimes (0 = their default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    print_header("onnxruntime", "onnx")
    print(f"CPU, network + box decoding (no NMS), random weights; batch-1 latency over {args.runs} runs, "
          f"throughput at batch {args.batch}")
    print(f"{'model':18s} {'size':>5s} {'GFLOPs':>7s} | {'eager latency':>22s} {'eager':>13s} | "
          f"{'onnxruntime latency':>22s} {'onnxruntime':>13s}")
    tmp = Path(tempfile.mkdtemp(prefix="facedet-bench-"))
    for name in args.model:
        with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"model={name}"])
        torch.manual_seed(0)
        model = build_detector(cfg.model).eval()
        wrapper = ExportWrapper(model).eval()
        onnx_path = None
        if ort is not None:
            onnx_path = export_onnx(model, tmp / f"{name}.onnx", img_size=max(args.size))
            opts = ort.SessionOptions()
            if args.threads:
                opts.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name
        for size in args.size:
            gflops = model_info(model, size, depth=0).gflops
            row = f"{name:18s} {size:5d} {gflops:7.2f} |"
            for batch in (1, args.batch):
                x = torch.rand(batch, 3, size, size)
                with torch.no_grad():
                    row += " " + describe(timed(lambda x=x, f=wrapper: f(x), args.runs), batch)
            row += " |"
            if onnx_path is not None:
                for batch in (1, args.batch):
                    x = np.random.rand(batch, 3, size, size).astype(np.float32)
                    run = lambda x=x, s=session, i=input_name: s.run(None, {i: x})  # noqa: E731
                    row += " " + describe(timed(run, args.runs), batch)
            else:
                row += " (onnxruntime not installed)"
            print(row, flush=True)


if __name__ == "__main__":
    main()
