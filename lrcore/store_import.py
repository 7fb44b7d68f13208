"""Import of an earlier version's run folders (lrcore.runstore) and sweep folders (lrcore.sweepstore)
into the SQL store, once per folder, the first time a store is opened beside them.

Nothing is lost and nothing is removed: the folders stay where they are (an older version can
still read them); each run becomes a row with its epochs, batch losses and weight snapshots,
each sweep a group whose configurations are runs. A folder that cannot be read is skipped with
one log line; a run id already in the store is left as it is.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from . import store_schema as schema
from .config import TrainConfig
from .record import EPOCH_FIELDS, MAX_BATCH_VALUES, MAX_SNAPSHOTS, RunRecord
from .status import Status

log = logging.getLogger(__name__)

RUN_FORMAT, SWEEP_FORMAT, SWEEPS = "lrcore-run", "lrcore-sweep", "sweeps"
OLD_STATUSES = {"running", "done", "stopped", "diverged", "crashed", "imported", "failed"}
CUT_OFF = ("it was still recorded as training when the run folders were imported (its process ended "
           "without finishing); the completed epochs are kept")


def import_folders(store: Any, root: Path) -> str:
    """Import the old runs and sweeps in `root` once; the message to show ("" when there were none)."""
    if not root.is_dir() or not any(_old_folders(root)):
        return ""
    folder = str(root.resolve())
    try:  # the claim: only one process imports a folder, once
        with store.engine.begin() as connection:
            if connection.execute(sa.select(schema.Import.folder).where(schema.Import.folder == folder)).first():
                return ""
            connection.execute(sa.insert(schema.Import).values(folder=folder, runs=0, sweeps=0, at=time.time()))
    except sa_exc.IntegrityError:
        return ""
    runs = sweeps = 0
    for path, kind in _old_folders(root):
        try:
            if kind == RUN_FORMAT:
                runs += _import_run(store, path)
            else:
                added = _import_sweep(store, path)
                sweeps += bool(added)
        except Exception as error:  # one damaged folder must not stop the others
            log.warning("could not import %s from an earlier version: %s", path.name, error)
    with store.engine.begin() as connection:
        connection.execute(sa.update(schema.Import).where(schema.Import.folder == folder)
                           .values(runs=runs, sweeps=sweeps, at=time.time()))
    if not runs and not sweeps:
        return ""
    parts = [f"{runs} run{'s' * (runs != 1)}"] if runs else []
    parts += [f"{sweeps} sweep{'s' * (sweeps != 1)}"] if sweeps else []
    return f"Imported {' and '.join(parts)} from the run folders of an earlier version."


def _old_folders(root: Path):
    for base, kind in ((root, RUN_FORMAT), (root / SWEEPS, SWEEP_FORMAT)):
        try:
            folders = sorted(base.iterdir())
        except OSError:
            continue
        for path in folders:
            if path.name.startswith(".") or not (path / "meta.json").is_file():
                continue
            yield path, kind


def _meta(path: Path, kind: str) -> dict:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != kind:
        raise ValueError(f"meta.json is not an lrcore {kind.split('-')[1]}")
    return meta


def _jsonl(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a torn last line
            continue
    return rows


def _load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def _normalizer(path: Path) -> Any:
    from .data import Normalizer

    values = _load(path)
    try:
        return Normalizer.from_dict(values) if isinstance(values, dict) else None
    except Exception:
        return None


def _status(value: Any) -> tuple[str, str]:
    status = str(value) if value in OLD_STATUSES else Status.CRASHED
    return (Status.CRASHED, CUT_OFF) if status == "running" else (status, "")


def _exists(connection: sa.Connection, run_id: str) -> bool:
    return connection.execute(sa.select(schema.Run.id).where(schema.Run.id == run_id)).first() is not None


def _insert(connection: sa.Connection, record: RunRecord, position: int = 0) -> None:
    """One whole record as rows (its epochs, batch losses and snapshots too)."""
    from .store import capped

    connection.execute(sa.insert(schema.Run).values(
        id=record.run_id, group_id=record.group_id, position=position, name=capped(record.name, 100),
        source=capped(record.source, 20), config=record.config.to_dict(), created=record.created,
        heartbeat=record.updated, host="", pid=0, normalizer=schema.normalizer_bytes(record.normalizer),
        save_error=record.save_error, **schema.run_values(record)))
    if record.epochs:
        connection.execute(sa.insert(schema.Epoch), [schema.epoch_row(record.run_id, row) for row in record.epochs])
    if record.batch_losses:
        connection.execute(sa.insert(schema.BatchLoss), [
            {"run_id": record.run_id, "step": step, "loss": schema.real(loss)}
            for step, loss in dict(zip(record.batch_steps, record.batch_losses)).items()])
    if record.snapshots:
        connection.execute(sa.insert(schema.Snapshot),
                           schema.snapshot_rows(record.run_id, schema.snapshot_keys(record.snapshots)))


def _import_run(store: Any, path: Path) -> int:
    import torch

    meta = _meta(path, RUN_FORMAT)
    name = meta.get("name") or path.name
    try:
        custom = json.loads((path / "name.json").read_text(encoding="utf-8"))
        if isinstance(custom, dict) and isinstance(custom.get("name"), str) and custom["name"].strip():
            name = custom["name"]
    except (OSError, ValueError):
        pass
    status, message = _status(meta.get("status"))
    record = RunRecord(
        path.name, str(name), TrainConfig.from_dict(meta["config"]), status=status,
        message=message or str(meta.get("message") or ""), source=str(meta.get("source") or "dashboard"),
        class_names=tuple(meta.get("class_names") or ()), train_size=int(meta.get("train_size") or 0),
        validation_size=int(meta.get("validation_size") or 0),
        batches_per_epoch=int(meta.get("batches_per_epoch") or 0), device=str(meta.get("device") or ""),
        lr_changes=list(meta.get("lr_changes") or []), learning_rate=float(meta.get("learning_rate") or 0.0),
        final=dict(meta.get("final") or {}), normalizer=_normalizer(path / "normalizer.pt"),
        created=float(meta.get("created") or 0.0), updated=float(meta.get("updated") or 0.0),
        elapsed=float(meta.get("duration") or 0.0), save_error=str(meta.get("save_error") or ""))
    record.epochs = [{name: row[name] for name in EPOCH_FIELDS} for row in _jsonl(path / "epochs.jsonl")
                     if isinstance(row, dict) and all(name in row for name in EPOCH_FIELDS)]
    for row in _jsonl(path / "batches.jsonl"):
        try:
            first, stride = int(row["step"]), int(row.get("stride", 1))
            losses = [float(x) for x in row["losses"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        record.batch_steps.extend(range(first, first + stride * len(losses), stride))
        record.batch_losses.extend(losses)
    record.batch_steps = record.batch_steps[-MAX_BATCH_VALUES:]
    record.batch_losses = record.batch_losses[-MAX_BATCH_VALUES:]
    for weight_file in sorted((path / "weights").glob("[0-9]*.pt"))[-MAX_SNAPSHOTS:]:
        values = _load(weight_file)
        if weight_file.stem.isdigit() and isinstance(values, dict) and isinstance(values.get("weight"), torch.Tensor):
            record.snapshots.append((int(weight_file.stem), values["weight"], values["bias"]))
    final = _load(path / "model.pt")  # the kept weights of a finished run
    if isinstance(final, dict) and isinstance(final.get("weight"), torch.Tensor):
        epoch = int(record.final.get("epochs_completed") or (record.epochs[-1]["epoch"] if record.epochs else 0))
        if not record.snapshots or not torch.equal(record.snapshots[-1][1], final["weight"]):
            record.snapshots = record.snapshots + [(epoch, final["weight"], final["bias"])]
        if record.normalizer is None and isinstance(final.get("normalizer"), dict):
            from .data import Normalizer

            record.normalizer = Normalizer.from_dict(final["normalizer"])
    with store.engine.begin() as connection:
        if _exists(connection, record.run_id):
            return 0
        _insert(connection, record)
    return 1


def _import_sweep(store: Any, path: Path) -> int:
    meta = _meta(path, SWEEP_FORMAT)
    sweep_id = path.name
    configs = [TrainConfig.from_dict(values) for values in meta["configs"]]
    labels = [str(label) for label in meta.get("labels") or []] + [""] * len(configs)
    members = [dict(member) for member in meta.get("members") or []] + [{}] * len(configs)
    normalizer = _normalizer(path / "normalizer.pt")
    sweep_status, _ = _status(meta.get("status"))
    created = float(meta.get("created") or 0.0)
    records = []
    for index, config in enumerate(configs):
        member = members[index]
        status = str(member.get("status") or Status.CRASHED)
        message = str(member.get("message") or "")
        if status in ("waiting", "training", "running") or status not in OLD_STATUSES:
            done = member.get("epochs_done") or 0
            status, message = Status.CRASHED, f"the sweep ended without finishing after epoch {done}"
        records.append(RunRecord(
            f"{sweep_id[:96]}-{index:02d}", labels[index] or f"configuration {index + 1}", config, status=status,
            message=message, source="sweep", group_id=sweep_id, class_names=tuple(meta.get("class_names") or ()),
            train_size=int(meta.get("train_size") or 0), validation_size=int(meta.get("validation_size") or 0),
            device=str(meta.get("device") or ""), learning_rate=config.learning_rate,
            final=dict(member.get("final") or {}), normalizer=normalizer, created=created + index * 1e-6,
            updated=float(meta.get("updated") or created), elapsed=float(meta.get("elapsed") or 0.0)))
    elapsed = [0.0] * len(records)
    for row in _jsonl(path / "epochs.jsonl"):
        try:
            index = int(row["member"])
            record = records[index]
            elapsed[index] += float(row.get("seconds") or 0.0)
            values = {"learning_rate": record.config.learning_rate, "elapsed": elapsed[index], **row}
            record.epochs.append({name: values[name] for name in EPOCH_FIELDS})
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    try:
        curves = json.loads((path / "curves.json").read_text(encoding="utf-8"))
        for record, curve in zip(records, curves):
            steps, losses = list(curve["steps"]), list(curve["smoothed"])
            if len(steps) == len(losses):
                record.batch_steps, record.batch_losses = steps[-MAX_BATCH_VALUES:], losses[-MAX_BATCH_VALUES:]
    except (OSError, ValueError, TypeError, KeyError):
        pass
    for weight_file in sorted((path / "weights").glob("group-*.pt")):
        values = _load(weight_file)
        try:
            for index, weight, bias in zip(values["indices"].tolist(), values["weight"], values["bias"]):
                record = records[index]
                record.snapshots = [(record.epochs[-1]["epoch"] if record.epochs else 0, weight, bias)]
        except Exception:
            continue
    with store.engine.begin() as connection:
        if connection.execute(sa.select(schema.Group.id).where(schema.Group.id == sweep_id)).first():
            return 0
        connection.execute(sa.insert(schema.Group).values(
            id=sweep_id, name=f"{len(configs)} configurations on {configs[0].dataset} ({sweep_status})",
            params={"configs": [config.to_dict() for config in configs], "labels": labels[:len(configs)],
                    "groups": meta.get("groups") or [], "imported": True},
            run_ids=[record.run_id for record in records], created=created))
        for position, record in enumerate(records):
            if not _exists(connection, record.run_id):
                _insert(connection, record, position)
    return 1
