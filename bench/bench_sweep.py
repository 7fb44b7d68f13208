"""One training run vs a 16- and a 64-value learning-rate sweep, side by side in one run.

    python bench/bench_sweep.py                      # mnist-sample, plus fashion-mnist if installed
    python bench/bench_sweep.py --device cuda --rounds 5

All three train on the same data, split, batch size and epochs: the single run with
`lrcore.training.train`, the sweeps with `lrcore.training.train_group` (K models on the same
minibatches, one stacked matrix product per step). The runs are interleaved for several
rounds and the fastest round of each is kept, so a busy machine slows them alike. Prints
training seconds per epoch (evaluation excluded, as `EpochEnd.seconds`), milliseconds per
configuration per epoch and the ratios to the single run, both in wall time and in CPU time
of the training thread (steadier on a shared machine), the evaluation's CPU time per epoch
and the total wall time including evaluations. Targets: a 16-value sweep at most 4x a single run on CPU; on a GPU a
64-value sweep at most 2x.
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
from lrcore.sweep import log_grid  # noqa: E402

SWEEP_SIZES = (16, 64)
# Stable learning rates for plain SGD: no member diverges, so every row does the full work.
LR_RANGE = (1e-3, 1.0)


def timed(configs: list[TrainConfig], dataset) -> dict[str, float]:
    """Best-epoch training time (wall and CPU), evaluation CPU time per epoch and total wall time.

    Every batch emits an event (batch_event_seconds=0), so the CPU clock read at an epoch's
    last batch event splits training from the evaluation that follows it. Training runs on
    this thread with one torch thread, so this thread's CPU time is all of its compute and
    hardly depends on what else the machine is doing; wall time does.
    """
    train_wall, train_cpu, eval_cpu = [], [], []
    start_wall = time.perf_counter()
    events = train_group(configs, dataset, batch_event_seconds=0.0)
    epoch_start = last_batch = None
    for event in events:
        now = time.thread_time()
        # K events of each kind per round, index 0 first: the last batch event ends training, the
        # first epoch event comes right after the evaluation
        if isinstance(event, ev.BatchProgress) and event.index == len(configs) - 1:
            last_batch = now
        elif isinstance(event, ev.EpochEnd) and event.index == 0:
            if event.epoch > 0:
                train_wall.append(event.seconds)
                train_cpu.append(last_batch - epoch_start)
                eval_cpu.append(now - last_batch)
            epoch_start = time.thread_time()
        elif isinstance(event, ev.Diverged):
            raise SystemExit(f"a benchmark configuration diverged ({event.message}); use a lower LR_RANGE")
    if device_of(configs[0]) == "cuda":
        torch.cuda.synchronize()
    return {"wall": min(train_wall), "cpu": min(train_cpu), "eval_cpu": min(eval_cpu),
            "total": time.perf_counter() - start_wall}


def device_of(config: TrainConfig) -> str:
    return "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"


def bench(name: str, epochs: int, rounds: int, device: str, batch_size: int) -> None:
    dataset = load_dataset(name)
    base = TrainConfig(dataset=name, epochs=epochs, batch_size=batch_size, optimizer="sgd", device=device)
    groups = {1: [base.replace(learning_rate=0.1)]}
    for size in SWEEP_SIZES:
        groups[size] = [base.replace(learning_rate=lr) for lr in log_grid(*LR_RANGE, size)]
    timed(groups[1], dataset)  # warm-up: device copies of the images, kernels, allocator
    best: dict[int, dict[str, float]] = {}
    for _ in range(rounds):
        for size, configs in groups.items():
            result = timed(configs, dataset)
            best[size] = {key: min(value, best.get(size, result)[key]) for key, value in result.items()}
    train_images = round(len(dataset.train_labels) * (1 - base.validation_fraction))
    on_gpu = device_of(base) == "cuda"
    print(f"\n{name}: ~{train_images:,} training images, batch size {batch_size}, {epochs} epoch(s), SGD, "
          f"device {device_of(base)}, 1 torch thread (lrcore.training), best of {rounds} interleaved rounds, "
          f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'configs':>7} | {'train s/epoch':>13} {'ms/config':>9} {'x single':>8} | {'CPU s/epoch':>11} "
          f"{'ms/config':>9} {'x single':>8} | {'eval CPU s':>10} | {'total wall s':>12} {'x single':>8}")
    single = best[1]
    for size, r in best.items():
        print(f"{size:>7} | {r['wall']:>13.4f} {1000 * r['wall'] / size:>9.2f} {r['wall'] / single['wall']:>8.2f} | "
              f"{r['cpu']:>11.4f} {1000 * r['cpu'] / size:>9.2f} {r['cpu'] / single['cpu']:>8.2f} | "
              f"{r['eval_cpu']:>10.4f} | {r['total']:>12.2f} {r['total'] / single['total']:>8.2f}")
    wall16, wall64 = best[16]["wall"] / single["wall"], best[64]["wall"] / single["wall"]
    cpu16, cpu64 = best[16]["cpu"] / single["cpu"], best[64]["cpu"] / single["cpu"]
    if on_gpu:
        print(f"target (GPU): 64-value sweep <= 2x a single run: {wall64:.2f}x (wall) -> "
              f"{'met' if wall64 <= 2 else 'MISSED'}; 16 values: {wall16:.2f}x")
    else:
        print(f"target (CPU): 16-value sweep <= 4x a single run: {wall16:.2f}x wall, {cpu16:.2f}x CPU -> "
              f"{'met' if min(wall16, cpu16) <= 4 else 'MISSED'}; 64 values: {wall64:.2f}x wall, {cpu64:.2f}x CPU "
              f"({64 / cpu64:.1f} configurations per single-run time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs on mnist-sample")
    parser.add_argument("--fashion-epochs", type=int, default=1, help="epochs on fashion-mnist (if installed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the fastest of each is kept")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dataset", default=None, help="only this dataset (default: mnist-sample + fashion-mnist)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads available")
    if args.dataset:
        bench(args.dataset, args.epochs, args.rounds, args.device, args.batch_size)
        return
    bench("mnist-sample", args.epochs, args.rounds, args.device, args.batch_size)
    if locate("fashion-mnist"):
        bench("fashion-mnist", args.fashion_epochs, args.rounds, args.device, args.batch_size)
    else:
        print("\nfashion-mnist not installed: skipped (python -m lrcore.download fashion-mnist)")


if __name__ == "__main__":
    main()
