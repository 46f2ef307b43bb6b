"""Train a face detector: ``python tools/train.py [group=option ...] [key=value ...]``.

Examples: ``python tools/train.py`` (synthetic faces, nano model, CPU-sized);
``python tools/train.py model=yolov4 train.epochs=3 data.img_size=320``.
"""

from facedet.cli.train import main

if __name__ == "__main__":
    main()
