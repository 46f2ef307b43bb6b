"""Export to ONNX: ``python tools/export.py checkpoint=<best.pt> [nms=true] [out=model.onnx]``.

Dynamic batch and image size; with ``nms=true`` plain IoU NMS runs inside the graph. The file is
run in onnxruntime and compared with PyTorch (``verify=true``). See configs/export.yaml and
docs/DEPLOY.md.
"""

from facedet.cli.export import main

if __name__ == "__main__":
    main()
