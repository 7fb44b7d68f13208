"""The run store's tables (SQLAlchemy 2 declarative) and how a RunRecord maps onto them.

One row per run in `runs`; its epochs, batch losses and weight snapshots in their own tables,
so a writer appends what is new instead of rewriting the run. JSON values are kept in TEXT
columns written by Python's json module, which carries NaN and ±inf (PostgreSQL's json type
refuses them, and a diverged run's losses are exactly that). Metrics in REAL columns: SQLite
stores NaN as NULL, so NULL reads back as NaN there.
"""
from __future__ import annotations

import io
import json
import math
from typing import Any

import torch
from sqlalchemy import DDL, Float, ForeignKey, Integer, LargeBinary, String, Text, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 2  # 2: runs have an owner and a lesson; lrcore_people
OWNER_LENGTH = 64
ID_LENGTH = 100
METRIC_FIELDS = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "learning_rate",
                 "seconds", "elapsed")


class JSONText(TypeDecorator):
    """A JSON value in a TEXT column (NaN and infinities kept)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "lrcore_meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Import(Base):
    """One import of an earlier version's run folders (done once per folder)."""

    __tablename__ = "lrcore_imports"
    folder: Mapped[str] = mapped_column(String(1000), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    sweeps: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[float] = mapped_column(Float)


class Group(Base):
    __tablename__ = "lrcore_groups"
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[Any] = mapped_column(JSONText, default=dict)
    run_ids: Mapped[Any] = mapped_column(JSONText, default=list)  # the group's order
    created: Mapped[float] = mapped_column(Float)


class Run(Base):
    __tablename__ = "lrcore_runs"
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(ID_LENGTH), default="", index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(20), default="")
    config: Mapped[Any] = mapped_column(JSONText)
    class_names: Mapped[Any] = mapped_column(JSONText, default=list)
    train_size: Mapped[int] = mapped_column(Integer, default=0)
    validation_size: Mapped[int] = mapped_column(Integer, default=0)
    batches_per_epoch: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(100), default="")
    learning_rate: Mapped[float] = mapped_column(Float, default=0.0)
    progress: Mapped[Any] = mapped_column(JSONText, default=dict)
    final: Mapped[Any] = mapped_column(JSONText, default=dict)
    lr_changes: Mapped[Any] = mapped_column(JSONText, default=list)
    normalizer: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created: Mapped[float] = mapped_column(Float, index=True)
    updated: Mapped[float] = mapped_column(Float)
    elapsed: Mapped[float] = mapped_column(Float, default=0.0)
    heartbeat: Mapped[float] = mapped_column(Float)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    batch_stride: Mapped[int] = mapped_column(Integer, default=1)
    batch_block: Mapped[Any] = mapped_column(JSONText, default=lambda: [0.0, 0, 0])
    snapshot_stride: Mapped[int] = mapped_column(Integer, default=1)
    save_error: Mapped[str] = mapped_column(Text, default="")
    # schema 2 (a class server): the browser that started the run ("" = nobody's) and its lesson's id
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), default="", server_default="", index=True)
    lesson: Mapped[str] = mapped_column(String(OWNER_LENGTH), default="", server_default="", index=True)


class Person(Base):
    """A browser of a class server (its public owner id): the name it typed, whether it is the teacher."""

    __tablename__ = "lrcore_people"
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(Text, default="")
    # the fingerprint of the teacher key it typed ("" = not the teacher); a changed key revokes it
    teacher: Mapped[str] = mapped_column(String(OWNER_LENGTH), default="")
    updated: Mapped[float] = mapped_column(Float, default=0.0)


class Control(Base):
    """A page's Pause, Resume, Stop or learning-rate change for a run (or a sweep: its group id) that
    another server trains; that server takes it (`taken` set) and applies it. A new table, not a new
    schema: `create_all` adds it to an existing store, and an older version simply never reads it."""

    __tablename__ = "lrcore_controls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)  # a run id or a sweep's group id
    command: Mapped[str] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    who: Mapped[str] = mapped_column(String(OWNER_LENGTH), default="")  # the owner id that asked ("" = nobody)
    created: Mapped[float] = mapped_column(Float, index=True)
    taken: Mapped[float | None] = mapped_column(Float, nullable=True)  # when the training server took it


# Columns added to an existing table since schema 1: (table, column), created by `upgrade` where missing.
ADDED_COLUMNS = (("lrcore_runs", "owner"), ("lrcore_runs", "lesson"))


class Epoch(Base):
    __tablename__ = "lrcore_epochs"
    run_id: Mapped[str] = mapped_column(ForeignKey("lrcore_runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    train_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    validation_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    learning_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    elapsed: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchLoss(Base):
    __tablename__ = "lrcore_batch_losses"
    run_id: Mapped[str] = mapped_column(ForeignKey("lrcore_runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)


class Snapshot(Base):
    __tablename__ = "lrcore_snapshots"
    run_id: Mapped[str] = mapped_column(ForeignKey("lrcore_runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    # 1 for kept weights after a stop inside an epoch: they follow that epoch's own snapshot
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    weight: Mapped[bytes] = mapped_column(LargeBinary)
    bias: Mapped[bytes] = mapped_column(LargeBinary)


# Weights are float bytes that do not compress: PostgreSQL's default (compress, then move out of line)
# spent most of a sweep's write time compressing them in vain.
for _column in ("weight", "bias"):
    event.listen(Snapshot.__table__, "after_create", DDL(
        f"ALTER TABLE lrcore_snapshots ALTER COLUMN {_column} SET STORAGE EXTERNAL").execute_if(dialect="postgresql"))

TABLES = [Meta.__table__, Import.__table__, Group.__table__, Run.__table__, Epoch.__table__,
          BatchLoss.__table__, Snapshot.__table__, Person.__table__, Control.__table__]


# ---------------------------------------------------------------- values

def real(value: Any) -> float | None:
    """A metric for a REAL column: NaN becomes NULL (SQLite would anyway), infinities stay."""
    value = float(value)
    return None if math.isnan(value) else value


def unreal(value: Any) -> float:
    return math.nan if value is None else float(value)


def epoch_row(run_id: str, row: dict) -> dict:
    return {"run_id": run_id, "epoch": int(row["epoch"]), "step": int(row["step"]),
            **{name: real(row[name]) for name in METRIC_FIELDS}}


def epoch_dict(row: Any) -> dict:
    """An epochs table row as the record's dict (EPOCH_FIELDS)."""
    return {"epoch": row.epoch, "step": row.step, **{name: unreal(getattr(row, name)) for name in METRIC_FIELDS}}


def snapshot_keys(snapshots: list) -> list[tuple[int, int, Any, Any]]:
    """(epoch, ordinal, weight, bias) for a record's snapshots: ordinal counts repeats of an epoch."""
    seen: dict[int, int] = {}
    keyed = []
    for epoch, weight, bias in snapshots:
        keyed.append((epoch, seen.get(epoch, 0), weight, bias))
        seen[epoch] = seen.get(epoch, 0) + 1
    return keyed


def snapshot_rows(run_id: str, snapshots: list) -> list[dict]:
    return [{"run_id": run_id, "epoch": epoch, "ordinal": ordinal, "weight": tensor_bytes(weight),
             "bias": tensor_bytes(bias)} for epoch, ordinal, weight, bias in snapshots]


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """torch.save of one CPU tensor (read back with weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return buffer.getvalue()


def bytes_tensor(data: bytes) -> torch.Tensor | None:
    try:
        value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # damaged: that snapshot simply has no weights
        return None
    return value if isinstance(value, torch.Tensor) else None


def normalizer_bytes(normalizer: Any) -> bytes | None:
    if normalizer is None:
        return None
    values = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in normalizer.to_dict().items()}
    buffer = io.BytesIO()
    torch.save(values, buffer)
    return buffer.getvalue()


def bytes_normalizer(data: bytes | None) -> Any:
    from .data import Normalizer

    if not data:
        return None
    try:
        return Normalizer.from_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    except Exception:
        return None


# ---------------------------------------------------------------- records

def run_values(record: Any) -> dict:
    """The runs-row columns a writer keeps up to date (not the name: a rename must stay)."""
    return {"status": str(record.status), "message": record.message, "class_names": list(record.class_names),
            "train_size": record.train_size, "validation_size": record.validation_size,
            "batches_per_epoch": record.batches_per_epoch, "device": record.device,
            "learning_rate": float(record.learning_rate), "progress": dict(record.progress),
            "final": dict(record.final), "lr_changes": list(record.lr_changes), "updated": record.updated,
            "elapsed": float(record.elapsed), "batch_stride": record.batch_stride,
            "batch_block": list(record.batch_block), "snapshot_stride": record.snapshot_stride}


def record_from_row(values: dict, limit_name: int, limit_message: int) -> Any:
    """A RunRecord from a runs row (a dict); ValueError says what is wrong with it."""
    from . import datasets
    from .config import ConfigError, TrainConfig
    from .record import RunRecord
    from .store import capped

    try:
        settings = values["config"]
        # a model imported from another machine's image folder: its dataset is not registered here
        foreign = isinstance(settings.get("dataset"), str) and settings["dataset"] not in datasets.REGISTRY
        config = (TrainConfig.of_unregistered_dataset if foreign else TrainConfig.from_dict)(settings)
    except (ConfigError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"its settings are invalid ({error})") from None
    return RunRecord(
        run_id=values["id"], name=capped(values["name"], limit_name) or values["id"], config=config,
        status=values["status"], message=capped(values["message"], limit_message),
        source=capped(values["source"], 20), group_id=values["group_id"] or "",
        class_names=tuple(str(name) for name in values["class_names"] or ()),
        train_size=int(values["train_size"] or 0), validation_size=int(values["validation_size"] or 0),
        batches_per_epoch=int(values["batches_per_epoch"] or 0), device=str(values["device"] or ""),
        batch_stride=int(values["batch_stride"] or 1), batch_block=list(values["batch_block"] or [0.0, 0, 0]),
        lr_changes=list(values["lr_changes"] or []), snapshot_stride=int(values["snapshot_stride"] or 1),
        progress=dict(values["progress"] or {}), learning_rate=float(values["learning_rate"] or 0.0),
        final=dict(values["final"] or {}), normalizer=bytes_normalizer(values.get("normalizer")),
        created=float(values["created"]), updated=float(values["updated"]), elapsed=float(values["elapsed"] or 0.0),
        save_error=capped(values["save_error"], limit_message), owner=str(values.get("owner") or ""),
        lesson=str(values.get("lesson") or ""))
