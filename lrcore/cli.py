"""Command line: train, evaluate and predict.

    python -m lrcore train --lr 0.5 --epochs 10 --save model.pt
    python -m lrcore train --dry-run                 # a few batches, for smoke tests
    python -m lrcore evaluate model.pt
    python -m lrcore predict model.pt my-digit.png   # or --random 5 for test images
    python -m lrcore train --dataset my-pictures.zip --image-size 32   # a folder of your own images

Bad arguments print one line saying what is wrong and exit with code 2. A missing
dataset or a bad checkpoint exits with 1, a diverged run with 3.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

import torch

from . import events as ev
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import DATASETS, ConfigError, TrainConfig, dataset_default_text, defaults_for
from .data import DatasetUnavailable, load_dataset, make_splits
from .datasets import REGISTRY
from .image_folder import FolderError, import_folder, load_cache, register_cached_folders
from .photo import DEFAULT_SIDE, IMAGE_SIDES
from .settings import BY_NAME, SETTINGS
from .jobs import new_id
from .naming import default_run_name
from .record import RunRecord, crash, fold
from .store import MAX_NAME_LENGTH, Store, StoreError, default_runs_dir
from .evaluate import evaluate_model, predict, split_data
from .training import train

EXIT_USAGE, EXIT_FAILURE, EXIT_DIVERGED = 2, 1, 3
DRY_RUN_BATCHES = 3
MAX_FILE_NAME_BYTES = 200  # file systems allow 255, and the temporary file's name adds ~15
DEFAULTS = TrainConfig.for_dataset(DATASETS[0])


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)", except for options whose default is None (nothing, or the dataset's)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def dataset_default_help(text: str, field: str) -> str:
    """Help for a setting whose default depends on --dataset: "... (default: 0.5) (default for Fashion-MNIST: 0.1)"."""
    value = BY_NAME[field].text(getattr(DEFAULTS, field))
    extra = dataset_default_text(field)
    return f"{text} (default: {value}){f' ({extra})' if extra else ''}"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (no usage dump) and exits with 2."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m lrcore", description=__doc__.splitlines()[0],
                           formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    fmt = HelpFormatter

    train_cmd = commands.add_parser("train", help="train a model", formatter_class=fmt,
                                    description="Train a model. Settings not given take the chosen dataset's "
                                                "defaults (lr, epochs and deskewing differ for Fashion-MNIST; your own "
                                                "pictures get standardised pixels and lr 16 / pixels).")
    add_data_options(train_cmd)
    add_setting_options(train_cmd)
    train_cmd.add_argument("--save", type=Path, default=None, metavar="PATH", help="write a checkpoint here (its folder must exist)")
    train_cmd.add_argument("--dry-run", action="store_true",
                           help=f"one epoch of {DRY_RUN_BATCHES} batches, nothing recorded (smoke test)")
    train_cmd.add_argument("--download", action="store_true", help="download mnist / fashion-mnist if missing")
    train_cmd.add_argument("--name", default=None, help="name of the run in the run store")
    train_cmd.add_argument("--runs-dir", type=Path, default=None,
                           help="folder of the run store's SQLite file (default: $LRCORE_RUNS_DIR or <data dir>/runs)")
    train_cmd.add_argument("--store", default=None, metavar="URL",
                           help="the run store as a database URL, e.g. postgresql://user@host/lrcore, shared by "
                                "several servers (default: $LRCORE_STORE_URL, else the SQLite file in --runs-dir)")
    train_cmd.add_argument("--no-record", action="store_true", help="do not write the run to the run store")
    train_cmd.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate_cmd = commands.add_parser("evaluate", help="evaluate a checkpoint", formatter_class=fmt)
    add_data_options(evaluate_cmd)
    evaluate_cmd.add_argument("checkpoint", type=Path, help="checkpoint file (.pt)")
    add_dataset_option(evaluate_cmd, None, "dataset to evaluate on (default: the checkpoint's)")
    evaluate_cmd.add_argument("--split", choices=("test", "validation"), default="test", help="split to evaluate")

    predict_cmd = commands.add_parser("predict", help="predict images with a checkpoint", formatter_class=fmt)
    add_data_options(predict_cmd)
    predict_cmd.add_argument("checkpoint", type=Path, help="checkpoint file (.pt)")
    add_dataset_option(predict_cmd, None, "dataset for --random (default: the checkpoint's)")
    predict_cmd.add_argument("images", nargs="*", type=Path, help="PNG/JPEG files of single digits")
    predict_cmd.add_argument("--random", type=int, default=0, metavar="N",
                             help="also predict N random test images (with their true labels)")
    predict_cmd.add_argument("--top", type=int, default=3, help="how many classes to list per image")
    predict_cmd.add_argument("--seed", type=int, default=None, help="seed for --random (default: random)")
    return parser


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting with a CLI flag (lrcore/settings.py). A setting whose default
    depends on the dataset defaults to None here and gets the dataset's in `config_from_args`."""
    for setting in SETTINGS:
        if not setting.flags:
            continue
        if setting.name == "dataset":  # a name or a folder/.zip of pictures: add_dataset_option
            add_dataset_option(parser, getattr(DEFAULTS, "dataset"), setting.cli_help)
            continue
        options: dict = {"dest": setting.name, "help": setting.cli_help,
                         "default": None if setting.by_dataset or setting.optional else getattr(DEFAULTS, setting.name)}
        if setting.by_dataset:
            options["help"] = dataset_default_help(setting.cli_help, setting.name)
        if setting.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif setting.kind is str:
            options["choices"] = setting.choices
        else:
            options["type"] = setting.kind
        parser.add_argument(*setting.flags, **options)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the full datasets (default: $LRCORE_DATA_DIR or ./data)")
    parser.add_argument("--image-size", type=int, choices=IMAGE_SIDES, default=DEFAULT_SIDE,
                        help="with --dataset FOLDER or ZIP: the square side (px) pictures are resized and cropped to")
    parser.add_argument("--grey", action="store_true",
                        help="with --dataset FOLDER or ZIP: greyscale pictures (default: colour, 3 channels)")


def add_dataset_option(parser: argparse.ArgumentParser, default: str | None, text: str) -> None:
    # Not argparse choices: a folder or a .zip of pictures is a dataset too (resolve_dataset).
    parser.add_argument("--dataset", default=default, metavar="NAME|PATH",
                        help=f"{text}: a dataset name (mnist-sample, mnist, fashion-mnist, or a folder dataset "
                             "imported earlier) or a folder / .zip of pictures, one sub-folder per class")


def resolve_dataset(args: argparse.Namespace) -> str | None:
    """The registered name of --dataset; a folder or .zip is imported first (decoded once, then cached)."""
    given = args.dataset
    if given is None or given in REGISTRY:
        return given
    path = Path(given)
    if not path.exists():
        raise ConfigError({"dataset": f"{given!r} is neither a dataset ({', '.join(REGISTRY)}) nor a folder "
                                      "or .zip of pictures"})
    progress = ImportProgress(sys.stderr) if sys.stderr.isatty() else None
    result = import_folder(path, args.image_size, not args.grey, progress=progress)
    if progress:
        progress.clear()
    counts = ", ".join(f"{split} {sum(per_class.values()):,}" for split, per_class in result.counts.items())
    print(f"{'cached' if result.from_cache else 'imported'} {shown(path)} as {result.name}: "
          f"{result.title}; {len(result.class_names)} classes ({', '.join(result.class_names)}), "
          f"{result.layout}; images: {counts}")
    for file_name, why in result.skipped:
        print(f"  skipped {file_name}: {why}")
    return result.name


class ImportProgress:
    """"decoding pictures 120/340" on a terminal, redrawn in place."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def __call__(self, done: int, total: int) -> None:
        self.stream.write(f"\rdecoding pictures {done:,}/{total:,} ")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r" + " " * 40 + "\r")
        self.stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "data_dir", None) is not None:
        os.environ["LRCORE_DATA_DIR"] = str(args.data_dir)  # one place that every loader reads
    try:
        register_cached_folders()  # folder datasets imported earlier are valid --dataset names
        return {"train": run_train, "evaluate": run_evaluate, "predict": run_predict}[args.command](args)
    except ConfigError as error:
        print(f"python -m lrcore {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetUnavailable, CheckpointError, StoreError, FolderError) as error:
        print(f"python -m lrcore {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILURE


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: those given, and the dataset's defaults (`defaults_for`) for the rest."""
    defaults = defaults_for(args.dataset)
    chosen = lambda field: defaults[field] if getattr(args, field) is None else getattr(args, field)  # noqa: E731
    values = {setting.name: chosen(setting.name) for setting in SETTINGS if setting.flags}
    return TrainConfig(**{**values, "epochs": 1 if args.dry_run else values["epochs"]})


def output_problems(args: argparse.Namespace) -> dict[str, str]:
    """{option: message} for a run name, run store folder or checkpoint path that cannot be used.

    Checked before the dataset is loaded and training starts: finding out after the run
    that --save points at a folder would throw the trained model away.
    """
    problems: dict[str, str] = {}
    if args.name:
        name = " ".join(args.name.split())
        if not name:
            problems["--name"] = "a run name cannot be blank"
        elif len(name) > MAX_NAME_LENGTH:
            problems["--name"] = f"a run name is at most {MAX_NAME_LENGTH} characters, got {len(name):,}"
    recording = not args.dry_run and not args.no_record
    if args.store is None and (args.runs_dir is not None or recording):
        folder = args.runs_dir if args.runs_dir is not None else default_runs_dir()
        try:
            problem = folder_problem(folder, "the run store folder", make_parents=args.runs_dir is None)
        except OSError as error:  # e.g. a name too long for the file system
            problem = f"the run store folder {shown(folder)} cannot be used: {error.strerror or error}"
        if problem:
            problems["--runs-dir" if args.runs_dir is not None else "run store"] = problem + \
                ("" if args.runs_dir is not None else " (from $LRCORE_RUNS_DIR or --data-dir; --no-record skips it)")
    if args.save is not None:
        try:
            if len(args.save.name.encode()) > MAX_FILE_NAME_BYTES:
                problem = f"the file name is {len(args.save.name.encode())} bytes long; at most {MAX_FILE_NAME_BYTES}"
            elif args.save.is_dir():
                problem = f"{shown(args.save)} is a folder; give a file name, e.g. {shown(args.save / 'model.pt')}"
            else:
                problem = folder_problem(args.save.parent, "the folder for the checkpoint", may_create=False)
        except OSError as error:
            problem = f"{shown(args.save)} cannot be used: {error.strerror or error}"
        if problem:
            problems["--save"] = problem
    return problems


def folder_problem(folder: Path, what: str, may_create: bool = True, make_parents: bool = False) -> str | None:
    """Why `folder` cannot be written to (or created: its last part, or with `make_parents`
    every missing part), or None."""
    if folder.exists():
        if not folder.is_dir():
            return f"{what} {shown(folder)} is a file, not a folder"
        return None if os.access(folder, os.W_OK | os.X_OK) else f"{what} {shown(folder)} is not writable"
    if not may_create:
        return f"{what} {shown(folder)} does not exist; create it first"
    parent = folder.parent
    while make_parents and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.exists():  # a typo should not silently create a tree of folders
        return f"{what} {shown(folder)} does not exist, nor does {shown(folder.parent)}; create it first"
    if not parent.is_dir():
        return f"{what} {shown(folder)} cannot be created: {shown(parent)} is a file"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{what} {shown(folder)} cannot be created: {shown(parent)} is not writable"
    return None


def shown(path: Path) -> str:
    """A path for a one-line message (a newline in a file name stays on the line)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def run_train(args: argparse.Namespace) -> int:
    problems = output_problems(args)
    if problems:
        raise ConfigError(problems)
    args.dataset = resolve_dataset(args)
    config = config_from_args(args)
    dataset = load_dataset(config.dataset, download=args.download)
    # Check the batch size against the split now, so a bad argument never leaves a crashed run behind.
    config.check_sizes(len(make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit).train))
    record = RunRecord(new_id(), " ".join(args.name.split()) if args.name else default_run_name(config), config,
                       source="cli")
    store = writer = None
    if not args.dry_run and not args.no_record:
        store = Store(args.store if args.store is not None else args.runs_dir)
        writer = store.writer(record)
    progress = None if args.quiet or not sys.stderr.isatty() else ProgressBar(sys.stderr)
    events = train(config, dataset, batch_event_seconds=0.2,
                   max_batches_per_epoch=DRY_RUN_BATCHES if args.dry_run else None)
    try:
        finished = report_events(events, record, writer, progress, config)
    except BaseException as error:  # Ctrl-C or a failure: the run reads back crashed, with its epochs
        if writer is not None:
            crash(record, "interrupted (Ctrl-C)" if isinstance(error, KeyboardInterrupt) else
                  f"training stopped by an internal error: {type(error).__name__}: {error}")
            writer.write(record, None)
            writer.close()
        if isinstance(error, KeyboardInterrupt):
            print("\ninterrupted", file=sys.stderr)
            return 130
        raise
    if writer is not None:
        writer.close()  # waits until everything is in the store
    print(f"{finished.status}: test accuracy {finished.test_accuracy:.4f}, test loss {finished.test_loss:.4f}, "
          f"validation accuracy {finished.validation_accuracy:.4f} ({finished.elapsed:.1f} s)")
    if args.save is not None:
        metrics = {"test_accuracy": finished.test_accuracy, "test_loss": finished.test_loss,
                   "validation_accuracy": finished.validation_accuracy, "validation_loss": finished.validation_loss}
        try:
            path = save_checkpoint(args.save, finished.model, config, finished.class_names, finished.normalizer,
                                   metrics)
        except OSError as error:  # checked before training; the disk can still fill up or change since
            print(f"python -m lrcore train: could not save the checkpoint to {shown(args.save)}: "
                  f"{error.strerror or error}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"saved checkpoint to {path}")
    if writer is not None and writer.error is not None:  # the disk filled up or went read-only mid-run
        print(f"python -m lrcore train: the run could not be saved in the run store: {writer.error}"
              + ("" if args.save is not None else "; use --save FILE to keep the model"), file=sys.stderr)
        return EXIT_FAILURE
    if store is not None:
        print(f"recorded as run {record.run_id} in {store.url}")
    return EXIT_DIVERGED if finished.status == "diverged" else 0


def report_events(events, record: RunRecord, writer, progress: "ProgressBar | None",
                  config: TrainConfig) -> ev.Finished:
    """Print what the training events say (and fold them into the run's record, which the writer
    saves); return the Finished event."""
    finished = None
    for event in events:
        fold(record, event)
        if writer is not None:
            writer.write(record, event)
        if isinstance(event, ev.RunStarted):
            print(f"training on {config.dataset} ({event.train_size:,} train / {event.validation_size:,} "
                  f"validation / {event.test_size:,} test images) on {event.device}")
        elif isinstance(event, ev.BatchProgress) and progress:
            progress.update(event)
        elif isinstance(event, ev.EpochEnd):
            if progress:
                progress.clear()
            print(epoch_line(event), flush=True)
        elif isinstance(event, ev.LearningRateChanged):
            print(f"learning rate {event.old:g} -> {event.new:g} at step {event.step}")
        elif isinstance(event, ev.Diverged):
            if progress:
                progress.clear()
            print(f"diverged: {event.message}", file=sys.stderr)
        elif isinstance(event, ev.Finished):
            finished = event
    return finished


def epoch_line(event: ev.EpochEnd) -> str:
    label = "start" if event.epoch == 0 else f"epoch {event.epoch:>{len(str(event.epochs))}}/{event.epochs}"
    timing = f"  {event.seconds:.2f} s" if event.epoch else ""
    return (f"{label}  train loss {event.train_loss:.4f} acc {event.train_accuracy:.4f}  "
            f"val loss {event.validation_loss:.4f} acc {event.validation_accuracy:.4f}  lr {event.learning_rate:g}{timing}")


class ProgressBar:
    """A one-line progress bar on a terminal, redrawn in place."""

    def __init__(self, stream: TextIO, width: int = 30):
        self.stream, self.width = stream, width

    def update(self, event: ev.BatchProgress) -> None:
        done = event.batch / event.batches_per_epoch
        filled = int(done * self.width)
        loss = event.losses[-1] if event.losses else float("nan")
        self.stream.write(f"\repoch {event.epoch} [{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done:4.0%} loss {loss:.3f} eta {event.seconds_left:4.1f}s ")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r" + " " * (self.width + 50) + "\r")
        self.stream.flush()


def run_evaluate(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    dataset = load_dataset(resolve_dataset(args) or checkpoint.config.dataset)
    images, labels = split_data(dataset, checkpoint.config, args.split)  # deskewed if trained so
    result = evaluate_model(checkpoint.model, checkpoint.normalizer, images, labels)
    print(f"{checkpoint.config.dataset} {args.split} split ({len(labels):,} images): "
          f"accuracy {result.accuracy:.4f}, loss {result.loss:.4f}")
    names = checkpoint.class_names
    width = max(len(n) for n in names)
    print(f"{'class':<{width}}  precision  recall  support")
    for name, row in zip(names, result.per_class()):
        print(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['support']:7d}")
    print("most confused (true -> predicted: images): " + ", ".join(
        f"{names[t]} -> {names[p]}: {n}" for t, p, n in result.most_confused(5)))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from .photo import decode_photo
    from .predict_drawing import predict_drawing
    from .preprocess import ImageError, load_image_bytes

    if args.top < 1:
        raise ConfigError({"top": f"must be at least 1, got {args.top}"})
    if not args.images and args.random <= 0:
        raise ConfigError({"images": "give image files, or --random N for test images"})
    checkpoint = load_checkpoint(args.checkpoint)
    names = checkpoint.class_names
    shape = checkpoint_shape(checkpoint)
    status = 0
    for path in args.images:
        try:
            if shape is not None:  # a photo model: resized and cropped as its folder's pictures were
                picture = decode_photo(path.read_bytes(), shape[1], shape[0] == 3)
                print(f"{path}: {top_classes(predict(checkpoint.model, checkpoint.normalizer, picture[None])[0], names, args.top)}")
                continue
            # Prepared like MNIST, and deskewed when the model was trained on deskewed images.
            result = predict_drawing(checkpoint.model, checkpoint.normalizer, load_image_bytes(path.read_bytes()),
                                     deskew=checkpoint.config.deskew)
        except (OSError, ImageError) as error:
            print(f"{path}: {error}", file=sys.stderr)
            status = EXIT_FAILURE
            continue
        if result.empty:
            print(f"{path}: {result.preprocessed.message}")
            continue
        print(f"{path}: {top_classes(result.probabilities, names, args.top)}")
    if args.random > 0:
        dataset = load_dataset(resolve_dataset(args) or checkpoint.config.dataset)
        generator = torch.Generator().manual_seed(args.seed if args.seed is not None else time.time_ns() % 2**31)
        picks = torch.randperm(len(dataset.test_labels), generator=generator)[:args.random]
        test_images = dataset.images("test", deskew=checkpoint.config.deskew)
        probabilities = predict(checkpoint.model, checkpoint.normalizer, test_images[picks])
        for index, probs in zip(picks.tolist(), probabilities):
            label = names[dataset.test_labels[index]]
            verdict = "right" if probs.argmax().item() == dataset.test_labels[index].item() else "WRONG"
            print(f"test image {index} (label {label}, {verdict}): {top_classes(probs, names, args.top)}")
    return status


def checkpoint_shape(checkpoint) -> tuple[int, int, int] | None:
    """(channels, side, side) of a photo model's pictures; None for a digit model (drawn-digit preparation)."""
    info = REGISTRY.get(checkpoint.config.dataset)
    if info is not None and info.loader is not load_cache:  # built-in datasets: MNIST-style preparation
        return None
    shape = getattr(checkpoint, "image_shape", None) or (info.shape if info is not None else None)
    return tuple(shape) if shape is not None else None


def top_classes(probabilities: torch.Tensor, names: Sequence[str], count: int) -> str:
    values, indices = probabilities.topk(min(count, len(names)))
    return ", ".join(f"{names[i]} {v:.1%}" for v, i in zip(values.tolist(), indices.tolist()))


if __name__ == "__main__":
    sys.exit(main())
