"""Draw page, server side: from the canvas's image data to class probabilities.

    python bench/bench_predict.py                 # 400 drawings, 3 rounds
    python bench/bench_predict.py --drawings 1000 --rounds 5
    python bench/bench_predict.py --quick         # 100 drawings, 1 round (make bench)

A component measurement: what a stroke costs the server's Python, without Streamlit. The time a
user waits from a stroke to the probabilities, in a browser on a real server, is measured by
bench/bench_latency.py.

Real MNIST test digits are pasted (1.5x to 10x, anywhere, sharp or soft edges) onto
280x280 black RGBA canvases, like the ones streamlit-drawable-canvas returns. Each is
timed through `lrcore.predict_drawing.predict_canvas` (preprocessing, the model's
normaliser, softmax), the function the page calls. Also timed, side by side in the same
run: the whole per-stroke server path, i.e. decoding the PNG data URL the browser sends
(as `CanvasResult.image_data` does) first, and the contribution maps the page draws
after. Prints median, p95 and max per drawing against the 50 ms target.
"""
from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrcore import TrainConfig, load_dataset, train  # noqa: E402
from lrcore.evaluate import contributions  # noqa: E402
from lrcore.predict_drawing import predict_canvas  # noqa: E402

TARGET_MS = 50.0
CANVAS = 280


def drawings(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` real digits pasted on 280x280 RGBA canvases: random size, place and edge."""
    images = load_dataset("mnist-sample").test_images
    rng = np.random.default_rng(seed)
    boards = []
    for i in range(count):
        side = int(rng.integers(42, CANVAS + 1))
        x, y = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
        resample = Image.Resampling.NEAREST if i % 2 == 0 else Image.Resampling.BILINEAR
        digit = images[int(rng.integers(len(images)))].numpy()
        board = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
        board[..., 3] = 255
        board[y:y + side, x:x + side, :3] = np.asarray(Image.fromarray(digit).resize((side, side), resample))[..., None]
        boards.append(board)
    return boards


def data_url(board: np.ndarray) -> str:
    """What the browser sends: the canvas as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(board, "RGBA").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(url: str) -> np.ndarray:
    """Exactly CanvasResult.image_data (streamlit-drawable-canvas 0.13)."""
    _, encoded = url.split(";base64,", 1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def time_each(function, items) -> list[float]:
    seconds = []
    for item in items:
        start = time.perf_counter()
        function(item)
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(name: str, seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    median, p95 = statistics.median(ms), float(np.percentile(ms, 95))
    verdict = "within" if p95 <= TARGET_MS else "OVER"
    return (f"{name:<44} median {median:6.2f} ms   p95 {p95:6.2f} ms   max {ms.max():6.2f} ms   "
            f"p95 {verdict} the {TARGET_MS:g} ms target ({TARGET_MS / p95:.1f}x headroom)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drawings", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="every drawing is timed this many times")
    parser.add_argument("--quick", action="store_true", help="100 drawings, 1 round (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.drawings, args.rounds = min(args.drawings, 100), 1

    for event in train(TrainConfig()):
        pass
    model, normalizer = event.model, event.normalizer
    boards = drawings(args.drawings)
    urls = [data_url(board) for board in boards]
    print(f"model: default TrainConfig on mnist-sample (test accuracy {event.test_accuracy:.3f}); "
          f"{len(boards)} drawings x {args.rounds} rounds; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")

    def analyse(board):  # what the page computes per stroke besides the probabilities
        result = predict_canvas(model, normalizer, board)
        return contributions(model, normalizer, result.image)

    for board in boards[:20]:  # warm-up: first calls allocate and load code paths
        analyse(board)
    path = {"canvas RGBA -> probabilities (predict_canvas)": [],
            "PNG data URL -> probabilities": [],
            "RGBA -> probabilities + contribution maps": []}
    for _ in range(args.rounds):  # interleaved, so load on a shared machine hits all alike
        path["canvas RGBA -> probabilities (predict_canvas)"] += time_each(
            lambda b: predict_canvas(model, normalizer, b), boards)
        path["PNG data URL -> probabilities"] += time_each(
            lambda u: predict_canvas(model, normalizer, decode(u)), urls)
        path["RGBA -> probabilities + contribution maps"] += time_each(analyse, boards)
    for name, seconds in path.items():
        print(summary(name, seconds))


if __name__ == "__main__":
    main()
