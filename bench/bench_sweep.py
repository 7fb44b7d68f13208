"""One training run vs a 16- and a 64-value learning-rate sweep, side by side in one run.

    python bench/bench_sweep.py                      # mnist-sample, plus fashion-mnist if installed
    python bench/bench_sweep.py --device cuda --rounds 5
    python bench/bench_sweep.py --sizes 16,64,256 --quick  # a minute or less (make bench)

All three train on the same data, split, batch size and epochs: the single run with
`lrcore.training.train`, the sweeps with `lrcore.training.train_group` (K models on the same
minibatches, one stacked matrix product per step). The runs are interleaved for several
rounds and the fastest epoch of each is kept, so a busy machine slows them alike. Prints
training seconds per epoch (evaluation excluded, as `EpochEnd.seconds`), the epoch's time
with its evaluation (what a user waits for), milliseconds per configuration and the ratios
to the single run, and the total wall time. Targets: a 64-value sweep at most 4x a single
run on CPU, at most 2x on a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrcore import TrainConfig, load_dataset, train_group  # noqa: E402
from lrcore import events as ev  # noqa: E402
from lrcore.data import locate  # noqa: E402

SWEEP_SIZES = (16, 64)
# Stable learning rates for plain SGD: no member diverges, so every row does the full work.
LR_RANGE = (1e-3, 1.0)


def learning_rates(count: int) -> list[float]:
    """`count` values evenly spaced on a log scale over LR_RANGE (as lrcore.sweep.log_grid, past its 64)."""
    low, high = LR_RANGE
    return [low * (high / low) ** (i / (count - 1)) for i in range(count)]


def timed(configs: list[TrainConfig], dataset) -> dict[str, float]:
    """Best epoch's training time, best epoch's time including its evaluations, and total wall time.

    Events come at the pages' rate (batch_event_seconds=0.1), not every batch: at K = 256 an
    event per model per batch would cost more than the arithmetic. An epoch's training time is
    `EpochEnd.seconds` (wall) and the training thread's CPU time; its time "with evaluation"
    runs from one epoch's EpochEnd to the next (training, the per-epoch evaluation(s) and the
    weight snapshot): what a user waits for each epoch. Training runs on this thread with one
    torch thread, so CPU time hardly depends on what else the machine does; wall time does.
    """
    train_wall, train_cpu, epoch_wall, epoch_cpu = [], [], [], []
    start_wall = time.perf_counter()
    events = train_group(configs, dataset, batch_event_seconds=0.1)
    last_wall = last_cpu = last_batch_cpu = None
    for event in events:
        # an epoch's last batch always sends K BatchProgress (index 0 first) before its evaluation
        if isinstance(event, ev.BatchProgress) and event.index == len(configs) - 1:
            last_batch_cpu = time.thread_time()
        elif isinstance(event, ev.EpochEnd) and event.index == 0:
            now_wall, now_cpu = time.perf_counter(), time.thread_time()
            if event.epoch > 0:
                train_wall.append(event.seconds)
                train_cpu.append(last_batch_cpu - last_cpu)
                epoch_wall.append(now_wall - last_wall)
                epoch_cpu.append(now_cpu - last_cpu)
            last_wall, last_cpu = now_wall, now_cpu
        elif isinstance(event, ev.Diverged):
            raise SystemExit(f"a benchmark configuration diverged ({event.message}); use a lower LR_RANGE")
    if device_of(configs[0]) == "cuda":
        torch.cuda.synchronize()
    return {"wall": min(train_wall), "cpu": min(train_cpu), "epoch": min(epoch_wall), "epoch_cpu": min(epoch_cpu),
            "total": time.perf_counter() - start_wall}


def device_of(config: TrainConfig) -> str:
    return "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"


def bench(name: str, epochs: int, rounds: int, device: str, batch_size: int, sizes: tuple[int, ...]) -> None:
    dataset = load_dataset(name)
    base = TrainConfig(dataset=name, epochs=epochs, batch_size=batch_size, optimizer="sgd", device=device)
    groups = {1: [base.replace(learning_rate=0.1)]}
    for size in sizes:
        if size > 1:
            groups[size] = [base.replace(learning_rate=lr) for lr in learning_rates(size)]
    timed(groups[1], dataset)  # warm-up: device copies of the images, kernels, allocator
    best: dict[int, dict[str, float]] = {}
    for _ in range(rounds):
        for size, configs in groups.items():
            result = timed(configs, dataset)
            best[size] = {key: min(value, best.get(size, result)[key]) for key, value in result.items()}
    train_images = round(len(dataset.train_labels) * (1 - base.validation_fraction))
    on_gpu = device_of(base) == "cuda"
    print(f"\n{name}: ~{train_images:,} training images, batch size {batch_size}, {epochs} epoch(s), SGD, "
          f"device {device_of(base)}, 1 torch thread (lrcore.training), best epoch of {rounds} interleaved rounds, "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("training: EpochEnd.seconds (wall) and the thread's CPU time; epoch: from one EpochEnd to the next "
          "(training + evaluation); x 1 = ratio to the single run. CPU time is the steadier on a busy machine.")
    print(f"{'configs':>7} | {'train wall s':>12} {'CPU s':>7} {'ms/cfg':>7} {'x 1 wall':>8} {'x 1 CPU':>7} | "
          f"{'epoch wall s':>12} {'CPU s':>7} {'x 1 wall':>8} {'x 1 CPU':>7} | {'total wall s':>12}")
    single = best[1]
    for size, r in best.items():
        print(f"{size:>7} | {r['wall']:>12.4f} {r['cpu']:>7.4f} {1000 * r['cpu'] / size:>7.2f} "
              f"{r['wall'] / single['wall']:>8.2f} {r['cpu'] / single['cpu']:>7.2f} | {r['epoch']:>12.4f} "
              f"{r['epoch_cpu']:>7.4f} {r['epoch'] / single['epoch']:>8.2f} {r['epoch_cpu'] / single['epoch_cpu']:>7.2f} | "
              f"{r['total']:>12.2f}")
    # One torch thread: on a CPU the thread's CPU time is the work, wall time also the machine's
    # load; on a GPU the CPU time is not the work, so wall time it is.
    clock = ("wall", "epoch") if on_gpu else ("cpu", "epoch_cpu")
    ratios = {size: tuple(best[size][key] / single[key] for key in clock) for size in best}
    described = "; ".join(f"{size} values: {train:.2f}x training, {epoch:.2f}x with evaluation ({clock[0]})"
                          for size, (train, epoch) in ratios.items() if size > 1)
    if on_gpu and 64 in ratios:
        print(f"target (GPU): 64-value sweep <= 2x a single run: {'met' if min(ratios[64]) <= 2 else 'MISSED'}; "
              f"{described}")
    elif 64 in ratios:
        print(f"target (CPU): 64-value sweep <= 4x a single run: {'met' if min(ratios[64]) <= 4 else 'MISSED'}; "
              f"{described}")
    else:
        print(described)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs on mnist-sample")
    parser.add_argument("--fashion-epochs", type=int, default=1, help="epochs on fashion-mnist (if installed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest of each is kept")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dataset", default=None, help="only this dataset (default: mnist-sample + fashion-mnist)")
    parser.add_argument("--sizes", default="16,64", help="sweep sizes beside the single run, e.g. 16,64,256")
    parser.add_argument("--quick", action="store_true", help="a minute or less: mnist-sample, 2 epochs, 1 round")
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    if args.quick:
        args.dataset, args.epochs, args.rounds = args.dataset or "mnist-sample", 2, 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads available")
    if args.dataset:
        bench(args.dataset, args.epochs, args.rounds, args.device, args.batch_size, sizes)
        return
    bench("mnist-sample", args.epochs, args.rounds, args.device, args.batch_size, sizes)
    if locate("fashion-mnist"):
        bench("fashion-mnist", args.fashion_epochs, args.rounds, args.device, args.batch_size, sizes)
    else:
        print("\nfashion-mnist not installed: skipped (python -m lrcore.download fashion-mnist)")


if __name__ == "__main__":
    main()
