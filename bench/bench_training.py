"""Tutorial pipeline vs lrcore's training loop, side by side in one run.

    python bench/bench_training.py            # full Fashion-MNIST if installed, else mnist-sample
    python bench/bench_training.py --epochs 3 --dataset mnist-sample
    python bench/bench_training.py --quick    # a minute or less (make bench)

Both train the same model (784 -> C logits) with SGD at batch size 128 on the same
train/validation split. The tutorials' pipeline is torchvision's dataset with
`ToTensor`, a shuffling `DataLoader`, `nn.Linear` and `optim.SGD` (tutorials 000/001);
lrcore's loop is `lrcore.training`. Prints seconds per epoch for each, the ratio (target:
lrcore at least 50x faster on CPU) and the accuracies each reaches. The ratio is fair only at
the same thread count, so both pipelines run at 1 torch thread and at the machine's default
(lrcore trains on one thread by design; for the default row that choice is switched off).
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import contextlib  # noqa: E402

from lrcore import TrainConfig, load_dataset, make_splits, train  # noqa: E402
from lrcore import events as ev  # noqa: E402
from lrcore import training as training_module  # noqa: E402
from lrcore.data import FILES, locate  # noqa: E402


def torchvision_root(dataset_name: str) -> tuple[Path, str]:
    """Lay the IDX files out where torchvision's dataset class expects them (uncompressed)."""
    from torchvision import datasets

    source = locate(dataset_name)
    root = Path(tempfile.mkdtemp(prefix="lrbench-"))
    folder_name = "FashionMNIST" if dataset_name == "fashion-mnist" else "MNIST"
    raw = root / folder_name / "raw"
    raw.mkdir(parents=True)
    for key, stem in FILES.items():
        if dataset_name == "mnist-sample" and key.startswith("train"):
            # mnist-sample has only the test split: use it as torchvision's "train" split too.
            stem_source = FILES[key.replace("train", "test")]
        else:
            stem_source = stem
        path = source / f"{stem_source}.gz" if (source / f"{stem_source}.gz").exists() else source / stem_source
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    cls = datasets.FashionMNIST if dataset_name == "fashion-mnist" else datasets.MNIST
    return root, cls.__name__


def tutorial_pipeline(dataset_name: str, train_indices: torch.Tensor, val_indices: torch.Tensor, test_mask,
                      epochs: int, lr: float, seed: int) -> tuple[list[float], float]:
    """Tutorial 001's loop: ToTensor dataset, DataLoader(batch_size=128, shuffle), nn.Linear, SGD."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    root, class_name = torchvision_root(dataset_name)
    full = getattr(datasets, class_name)(root, train=True, transform=transforms.ToTensor(), download=False)
    pool = test_mask(full)
    train_ds = Subset(pool, train_indices.tolist())
    val_ds = Subset(pool, val_indices.tolist())
    torch.manual_seed(seed)
    train_loader = DataLoader(train_ds, batch_size=128, shuffle=True)
    val_loader = DataLoader(val_ds, batch_size=256)

    class MnistModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, xb):
            return self.linear(xb.reshape(-1, 784))

    model = MnistModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds.append(time.perf_counter() - start)
    correct = total = 0
    with torch.no_grad():
        for images, labels in val_loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    shutil.rmtree(root, ignore_errors=True)
    return seconds, correct / total


def lrcore_loop(config: TrainConfig, dataset, own_threads: bool = True) -> tuple[list[float], float, float]:
    """lrcore's epochs (training seconds) and accuracies; own_threads=False keeps the caller's
    torch thread count instead of lrcore's one thread."""
    seconds, finished = [], None
    original = training_module.single_cpu_thread
    if not own_threads:
        training_module.single_cpu_thread = lambda device: contextlib.nullcontext()
    try:
        for event in train(config, dataset, batch_event_seconds=0.25):
            if isinstance(event, ev.EpochEnd) and event.epoch > 0:
                seconds.append(event.seconds)
            elif isinstance(event, ev.Finished):
                finished = event
    finally:
        training_module.single_cpu_thread = original
    return seconds, finished.validation_accuracy, finished.test_accuracy


@contextlib.contextmanager
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default: fashion-mnist when installed, else mnist-sample")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for the timing comparison")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate for the timing comparison")
    parser.add_argument("--accuracy-epochs", type=int, default=None,
                        help="epochs for lrcore's accuracy run (default: the dataset's recipe below)")
    parser.add_argument("--device", default="cpu", help="device for lrcore (cpu, cuda, auto)")
    parser.add_argument("--quick", action="store_true",
                        help="a minute or less: mnist-sample, 1 timed epoch, 1-epoch accuracy run")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.epochs, args.accuracy_epochs = args.dataset or "mnist-sample", 1, 1
    name = args.dataset or ("fashion-mnist" if locate("fashion-mnist") else "mnist-sample")
    dataset = load_dataset(name)
    validation_fraction = 1 / 6 if name != "mnist-sample" else 0.2  # 50,000 / 10,000 as tutorial 001
    config = TrainConfig(dataset=name, learning_rate=args.lr, batch_size=128, epochs=args.epochs,
                         validation_fraction=validation_fraction, optimizer="sgd", device=args.device)
    splits = make_splits(dataset, validation_fraction, config.seed)
    default_threads = torch.get_num_threads()
    print(f"dataset {name}: {len(splits.train):,} train / {len(splits.validation):,} validation images, "
          f"batch size 128, SGD lr {args.lr}, best of {args.epochs} epoch(s), machine default {default_threads} "
          f"torch threads on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")

    if name == "mnist-sample":
        from torch.utils.data import Subset

        from lrcore.data import sample_test_split

        def test_mask(full):
            # The same pool (train + validation) that load_dataset("mnist-sample") keeps, in its order.
            _test, pool = sample_test_split(full.targets)
            return Subset(full, pool.tolist())
    else:
        def test_mask(full):
            return full

    per_50k = 50_000 / len(splits.train)
    for threads in dict.fromkeys((1, default_threads)):  # both pipelines at the same thread count
        with torch_threads(threads):
            tut_seconds, tut_val = tutorial_pipeline(name, splits.train, splits.validation, test_mask,
                                                     args.epochs, args.lr, config.seed)
            lr_seconds, lr_val, _ = lrcore_loop(config, dataset, own_threads=threads == 1)
        tut, ours = min(tut_seconds), min(lr_seconds)
        print(f"\n{threads} thread(s):")
        print(f"  tutorial pipeline: {tut:.3f} s/epoch ({tut * per_50k:.2f} s per 50,000 images), "
              f"validation accuracy {tut_val:.4f}")
        print(f"  lrcore ({config.device}):     {ours:.4f} s/epoch ({ours * per_50k:.3f} s per 50,000 images), "
              f"validation accuracy {lr_val:.4f}")
        print(f"  ratio: lrcore is {tut / ours:.1f}x faster at {threads} thread(s) (target >= 50x on CPU)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (figures on a busy machine are slower and noisier)")

    recipe = dict(ACCURACY_SETTINGS.get(name, {}))
    if args.accuracy_epochs:
        recipe["epochs"] = args.accuracy_epochs
    accuracy_config = TrainConfig(dataset=name, validation_fraction=validation_fraction, device=args.device,
                                  **recipe)
    start = time.perf_counter()
    _, val_acc, test_acc = lrcore_loop(accuracy_config, dataset)
    print(f"accuracy run ({accuracy_config.optimizer}, lr {accuracy_config.learning_rate}, batch "
          f"{accuracy_config.batch_size}, {accuracy_config.epochs} epochs): validation {val_acc:.4f}, "
          f"test {test_acc:.4f} in {time.perf_counter() - start:.1f} s")


# Settings for the accuracy figure (found with a train_group grid over lr, optimizer and
# normalisation; scikit-learn's lbfgs logistic regression gets 0.844 on this split).
# mnist-sample uses the dashboard's defaults.
ACCURACY_SETTINGS: dict[str, dict] = {
    "fashion-mnist": {"optimizer": "adamw", "learning_rate": 0.001, "epochs": 30},
    "mnist-sample": {},
}

if __name__ == "__main__":
    main()
