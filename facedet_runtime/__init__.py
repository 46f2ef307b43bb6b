"""facedet's torch-free runtime: run an exported facedet model (ONNX, or OpenVINO IR) on images,
folders and videos with numpy, OpenCV and onnxruntime (OpenVINO optional), and get boxes, scores
and (for a landmark model) points in the original images' pixels.

    from facedet_runtime import FaceDetector
    det = FaceDetector("model.onnx")            # settings from the file's metadata
    [faces] = det([rgb_image])                  # {"boxes", "scores"[, "landmarks"]}

Imports only numpy, cv2, onnxruntime, openvino (lazily) and the standard library (an
import-linter contract keeps torch, hydra, omegaconf and facedet out). See docs/DEPLOY.md.
"""

from facedet_runtime.backends import BACKENDS, BackendUnavailable
from facedet_runtime.detector import FaceDetector
from facedet_runtime.letterbox import LETTERBOX_PAD, boxes_to_original, letterbox_image, letterbox_shape
from facedet_runtime.metadata import FORMAT, ModelError, ModelInfo
from facedet_runtime.postprocess import PostProcess
from facedet_runtime.run import detect_source
from facedet_runtime.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageError, list_sources, load_image

__version__ = "0.1.0"

__all__ = ["BACKENDS", "FORMAT", "IMAGE_SUFFIXES", "LETTERBOX_PAD", "VIDEO_SUFFIXES", "BackendUnavailable",
           "FaceDetector", "ImageError", "ModelError", "ModelInfo", "PostProcess", "boxes_to_original",
           "detect_source", "letterbox_image", "letterbox_shape", "list_sources", "load_image"]
