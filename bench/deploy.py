"""facedet's exported models and the peer face detectors side by side: batch-1 latency, images/s and
AP50 on facemask val and faces5pt val, at each input size (issue 17; docs/DEPLOY.md "Measuring").

    python bench/deploy.py --torch best.pt --onnx model.onnx --onnx-slim model.slim.onnx \\
        --onnx-int8 model.int8.onnx --openvino model.xml --openvino-int8 model.int8.xml \\
        --peer retinaface_mnet025=/work/peer-envs/retinaface_mnet025/bin/python --peer yunet=... \\
        --sizes 320 640 --threads 2 --markdown deploy.md [--quick]

Every row runs alone, one after the other, as a subprocess of its own Python running
``bench/peers/<adapter>.py`` (the protocol: bench/deploy_out.py, bench/peers/README.md); facedet's rows
use this Python. A row whose file (or peer Python) is not given is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.common import cpu_model  # noqa: E402
from bench.deploy_out import ROOT, ap50, image_paths, load_out, timing, val_records  # noqa: E402
from facedet.registry import ConfigError  # noqa: E402

PEERS_DIR = ROOT / "bench" / "peers"
DATASETS = ("facemask", "faces5pt")
QUICK_IMAGES, QUICK_WARMUP, QUICK_REPEATS = 8, 1, 5


@dataclass(frozen=True)
class Row:
    label: str
    flag: str  # the command-line option that names its file
    adapter: str
    variant: str | None = None


FACEDET_ROWS = (
    Row("facedet fp32 eager torch", "torch", "facedet_torch", "torch"),
    Row("facedet fp32 ORT", "onnx", "facedet_exported", "onnxruntime"),
    Row("facedet fp32 ORT folded+slim", "onnx_slim", "facedet_exported", "onnxruntime"),
    Row("facedet int8 ORT", "onnx_int8", "facedet_exported", "onnxruntime"),
    Row("facedet OpenVINO fp32", "openvino", "facedet_exported", "openvino"),
    Row("facedet OpenVINO int8", "openvino_int8", "facedet_exported", "openvino"),
)
PEERS = ("retinaface_mnet025", "yunet", "blazeface", "centerface")  # the peers, bench/peers/<name>.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", help="training checkpoint (best.pt): the fp32 eager PyTorch row")
    ap.add_argument("--onnx", help="fp32 ONNX export")
    ap.add_argument("--onnx-slim", help="fp32 ONNX export with BatchNorm folded and onnxslim")
    ap.add_argument("--onnx-int8", help="int8 (QDQ) ONNX export")
    ap.add_argument("--openvino", help="OpenVINO fp32 IR (.xml) or an .onnx for OpenVINO")
    ap.add_argument("--openvino-int8", help="OpenVINO int8 IR (.xml)")
    ap.add_argument("--peer", action="append", default=[], metavar="NAME=PYTHON",
                    help="a peer adapter bench/peers/NAME.py and the Python of its environment (repeatable)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640], help="input sizes (longer side)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of every detector")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--latency-repeats", type=int, default=50)
    ap.add_argument("--facemask-root", help="facemask data set folder (default: configs/data/facemask.yaml's)")
    ap.add_argument("--faces5pt-root", help="faces5pt data set folder (default: configs/data/faces5pt.yaml's)")
    ap.add_argument("--markdown", help="write the header and table here (for docs/DEPLOY.md)")
    ap.add_argument("--keep", help="keep the image lists and every OUT.json in this folder")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one adapter run may take")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK_IMAGES} images per set, {QUICK_WARMUP} warmup, {QUICK_REPEATS} repeats")
    return ap.parse_args(argv)


def peer_pythons(specs: list[str]) -> dict[str, str]:
    """``NAME=PYTHON`` options -> {name: python}; ConfigError for a malformed one or an unknown adapter."""
    out = {}
    for spec in specs:
        name, sep, python = spec.partition("=")
        if not sep or not name or not python:
            raise ConfigError(f"--peer {spec}: expected NAME=/path/to/venv/bin/python")
        if not (PEERS_DIR / f"{name}.py").is_file():
            known = sorted(p.stem for p in PEERS_DIR.glob("*.py") if not p.stem.startswith(("facedet_", "_")))
            raise ConfigError(f"--peer {spec}: no adapter bench/peers/{name}.py (adapters: {', '.join(known)})")
        if not Path(python).is_file():
            raise ConfigError(f"--peer {spec}: no Python at {python} (see bench/peers/README.md to set it up)")
        out[name] = python
    return out


def plan(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """(runnable rows: label, python, adapter, model, variant; skipped rows with their reason)."""
    rows, skipped = [], []
    for r in FACEDET_ROWS:
        path = getattr(args, r.flag)
        option = "--" + r.flag.replace("_", "-")
        if path is None:
            skipped.append(f"{r.label}: skipped, no {option} file given")
        elif not Path(path).is_file():
            raise ConfigError(f"{option} {path}: no such file")
        else:
            rows.append({"label": r.label, "python": sys.executable, "adapter": r.adapter, "model": path,
                         "variant": r.variant, "facedet": True})
    pythons = peer_pythons(args.peer)
    for name in [*PEERS, *sorted(set(pythons) - set(PEERS))]:
        if name in pythons:
            rows.append({"label": name, "python": pythons[name], "adapter": name, "model": None, "variant": None,
                         "facedet": False})
        else:
            skipped.append(f"{name}: skipped, no --peer {name}=PYTHON given")
    return rows, skipped


def run_adapter(row: dict[str, Any], list_path: Path, out_path: Path, size: int, args: argparse.Namespace,
                *, warmup: int, repeats: int) -> str | None:
    """Run one adapter; None when it succeeded, else why it failed (its last error line)."""
    cmd = [row["python"], str(PEERS_DIR / f"{row['adapter']}.py"), "--images", str(list_path), "--size", str(size),
           "--threads", str(args.threads), "--out", str(out_path), "--warmup", str(warmup),
           "--latency-repeats", str(repeats)]
    if row["model"]:
        cmd += ["--model", str(row["model"])]
    if row["variant"]:
        cmd += ["--variant", row["variant"]]
    # a peer's environment gets no PYTHONPATH (only its own packages); facedet's rows get this tree first
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": str(args.threads)}
    if row["facedet"]:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    print(f"  $ {shlex.join(cmd)}", flush=True)
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {args.timeout:.0f} s"
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        return f"exit {done.returncode}: {lines[-1] if lines else 'no output'}"
    return None


def measure(rows: list[dict[str, Any]], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Every row at every size on every data set, sequentially: the table's records."""
    limit = QUICK_IMAGES if args.quick else None
    sets = {}
    for name in DATASETS:
        records = val_records(name, getattr(args, f"{name}_root"))[:limit]
        (work / f"{name}.txt").write_text("\n".join(image_paths(records)) + "\n")
        sets[name] = records
    warmup, repeats = (QUICK_WARMUP, QUICK_REPEATS) if args.quick else (args.warmup, args.latency_repeats)
    results = []
    for row in rows:
        for size in args.sizes:
            res = {"label": row["label"], "size": size, "error": None, "versions": {}, "input": ""}
            for name, records in sets.items():
                stem = f"{row['adapter']}_{row['variant'] or 'peer'}_{Path(str(row['model'])).stem}"
                out_path = work / f"{stem}_{size}_{name}.json"
                print(f"{row['label']} at {size} on {name} val ({len(records)} images)", flush=True)
                # latency is taken on the facemask run; the faces5pt run is for its AP only
                timed = name == DATASETS[0]
                err = run_adapter(row, work / f"{name}.txt", out_path, size, args, warmup=warmup if timed else 0,
                                  repeats=repeats if timed else 1)
                if err is None:
                    try:
                        out = load_out(out_path, image_paths(records))
                    except ConfigError as e:
                        err = str(e)
                if err is not None:
                    res["error"] = f"{name}: {err}"
                    print(f"  failed: {err}", flush=True)
                    break
                res[f"ap50_{name}"] = ap50(out, records)
                if timed:
                    res |= timing(out) | {"versions": out["versions"], "input": out["input"], "name": out["name"]}
            results.append(res)
    return results


def header(argv: list[str], load_start: tuple[float, ...], load_end: tuple[float, ...],
           results: list[dict[str, Any]], quick: bool) -> list[str]:
    """The lines that make the table reproducible: command, date, versions, machine, load."""
    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    ours = [f"python {platform.python_version()}"] + [f"{d} {v(d)}" for d in ("numpy", "onnxruntime", "openvino",
                                                                            "torch")]
    lines = [f"command: `{shlex.join([Path(sys.executable).name, *argv])}`",
             f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"versions: {', '.join(ours)}"]
    seen = set()
    for r in results:
        if r.get("versions") and r["label"] not in seen and not r["label"].startswith("facedet"):
            seen.add(r["label"])
            lines.append(f"versions ({r['label']}): " + ", ".join(f"{k} {x}" for k, x in r["versions"].items()))
    fmt = " ".join(f"{x:.2f}" for x in load_start), " ".join(f"{x:.2f}" for x in load_end)
    lines.append(f"machine: {platform.system()} {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores; "
                 f"load average (1, 5, 15 min) at start {fmt[0]}, at end {fmt[1]}")
    if max(load_start[0], load_end[0]) > 0.5:
        lines.append("WARNING: the 1-minute load average was above 0.5: other work shared the CPUs, timings are "
                     "not reliable")
    if quick:
        lines.append(f"QUICK RUN: {QUICK_IMAGES} images per data set, {QUICK_REPEATS} latency samples: a smoke test, "
                     f"not a result")
    return lines


def table(results: list[dict[str, Any]], skipped: list[str]) -> list[str]:
    """The markdown table and the notes on skipped and failed rows."""
    def f(x: Any, d: int) -> str:
        return "n/a" if x is None or x != x else f"{x:.{d}f}"

    lines = ["| detector | size | latency median (ms) | latency p90 (ms) | images/s | AP50 facemask val | "
             "AP50 faces5pt val | input |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if r["error"]:
            lines.append(f"| {r['label']} | {r['size']} | failed | | | | | {r['error']} |")
            continue
        lines.append(f"| {r['label']} | {r['size']} | {f(r['median_ms'], 1)} | {f(r['p90_ms'], 1)} | "
                     f"{f(r['images_per_s'], 1)} | {f(r.get('ap50_facemask'), 3)} | {f(r.get('ap50_faces5pt'), 3)} | "
                     f"{r['input']} |")
    return lines + ([""] + [f"- {s}" for s in skipped] if skipped else [])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        rows, skipped = plan(args)
        for s in skipped:
            print(s)
        load_start = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="deploy_bench_") as tmp:
            work = Path(args.keep or tmp)
            work.mkdir(parents=True, exist_ok=True)
            results = measure(rows, args, work)
        load_end = os.getloadavg()
    except ConfigError as e:
        print(f"deploy: error: {e}", file=sys.stderr)
        return 2
    text = "\n".join([*(f"{ln}  " for ln in header([sys.argv[0], *argv], load_start, load_end, results, args.quick)),
                      "", *table(results, skipped)]) + "\n"
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
