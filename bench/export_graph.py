"""What BatchNorm folding and onnxslim do to an exported graph: node count, file size and ONNX Runtime
latency of the plain, folded and folded+slimmed exports (and optionally their int8 QDQ copy).

    python bench/export_graph.py                                  # yolov4_nano at 320, 2 threads
    python bench/export_graph.py --model yolov4_tiny --size 640 --runs 100 --int8

Latency: batch 1, ``--threads`` intra-op threads (inter-op 1), the median (and quartiles) of
``--runs`` runs after ``--warmup`` runs, one session per file, on the same random input. The model
has random weights (speed does not depend on them; the int8 row calibrates on a few synthetic
images, so its ranges mean nothing for accuracy). Needs the [export] extra, and onnxslim (the
[deploy] extra) for the slim row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CONFIGS, print_header  # noqa: E402
from facedet.export.fold import fold_batchnorm  # noqa: E402
from facedet.export.onnx import export_onnx  # noqa: E402
from facedet.export.quiet import library_logs_at_debug  # noqa: E402
from facedet.models import build_detector  # noqa: E402


def latency(path: Path, size: int, threads: int, runs: int, warmup: int) -> list[float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"images": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"images": x})
        times.append(time.perf_counter() - t0)
    return times


def describe(path: Path, times: list[float]) -> str:
    import onnx

    nodes = onnx.load(str(path)).graph.node
    ops = Counter(n.op_type for n in nodes)
    q1, med, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    top = ", ".join(f"{k} {v}" for k, v in ops.most_common(4))
    return (f"{len(nodes):6d} {path.stat().st_size / 2**20:8.2f} {med * 1e3:9.2f} ({q1 * 1e3:.2f}-{q3 * 1e3:.2f})"
            f"  BatchNormalization {ops.get('BatchNormalization', 0)}; {top}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov4_nano", help="a model config (configs/model/*.yaml)")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per file")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--int8", action="store_true", help="also time the int8 (ORT QDQ) copy of the folded+slim file")
    args = ap.parse_args()
    print_header("onnxruntime", "onnx", "onnxslim")
    print(f"{args.model} at {args.size}, random weights; ONNX Runtime CPU, batch 1, {args.threads} intra-op threads, "
          f"median (quartiles) of {args.runs} runs after {args.warmup}")
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={args.model}"])
    torch.manual_seed(0)
    model = build_detector(cfg.model).eval()
    tmp = Path(tempfile.mkdtemp(prefix="facedet-graph-"))
    files: dict[str, Path] = {}
    with library_logs_at_debug():
        files["plain"] = export_onnx(model, tmp / "plain.onnx", img_size=args.size)
        folded, n = fold_batchnorm(model)
        files[f"folded ({n} BN)"] = export_onnx(folded, tmp / "folded.onnx", img_size=args.size)
        try:
            from facedet.export.slim import slim_onnx

            files["folded + slim"] = slim_onnx(files[f"folded ({n} BN)"], tmp / "folded_slim.onnx")
        except Exception as e:  # noqa: BLE001 - print the row as missing, measure the rest
            print(f"slim: skipped ({e})")
        if args.int8:
            from facedet.data.synthetic import render_synthetic_image
            from facedet.export.calibration import letterboxed
            from facedet.export.quantize_ort import quantize_onnx_int8

            calib = [letterboxed(render_synthetic_image(0, "val", k)[0], args.size) for k in range(8)]
            src = files.get("folded + slim", files[f"folded ({n} BN)"])
            files["int8 QDQ of the last"] = quantize_onnx_int8(src, tmp / "int8.onnx", calib)
    print(f"{'export':22s} {'nodes':>6s} {'MiB':>8s} {'ms':>9s}")
    for name, path in files.items():
        print(f"{name:22s} {describe(path, latency(path, args.size, args.threads, args.runs, args.warmup))}",
              flush=True)


if __name__ == "__main__":
    main()
