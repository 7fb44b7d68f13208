"""Reading stored runs back: the rows of a query as RunRecords (epochs, batch losses, weight
snapshots) with dead writers' runs settled as crashed, a run's newest snapshot as checkpoint bytes,
and the bytes the store takes. The Store's reading methods call these with themselves.
"""
from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

from . import store_schema as schema
from .checkpoint import CheckpointError, checkpoint_bytes as make_checkpoint_bytes
from .model import LogisticRegression
from .record import RunRecord
from .store_liveness import settle
from .store_setup import FINAL_METRICS, MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH


def read_records(store: Any, where: list, order: tuple, batches: bool, weights: bool,
                 normalizer: bool) -> list[RunRecord]:
    """The runs matching `where` (see Store._records); rows that cannot be read go to `store.skipped`."""
    columns = [column for column in schema.Run.__table__.c if normalizer or column.name != "normalizer"]
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(*columns).where(*where).order_by(*order)).all()
        children = sa.select(schema.Run.id).where(*where)
        epochs = connection.execute(sa.select(schema.Epoch).where(schema.Epoch.run_id.in_(children))
                                    .order_by(schema.Epoch.run_id, schema.Epoch.epoch)).all()
        points = [] if not batches else connection.execute(
            sa.select(schema.BatchLoss).where(schema.BatchLoss.run_id.in_(children))
            .order_by(schema.BatchLoss.run_id, schema.BatchLoss.step)).all()
        counts = dict(connection.execute(
            sa.select(schema.Snapshot.run_id, sa.func.count()).where(schema.Snapshot.run_id.in_(children))
            .group_by(schema.Snapshot.run_id)).all())
        snapshots = connection.execute(sa.select(schema.Snapshot).where(schema.Snapshot.run_id.in_(children))
                                       .order_by(schema.Snapshot.run_id, schema.Snapshot.epoch,
                                                 schema.Snapshot.ordinal)).all() if weights else []
    records, store.skipped = {}, []
    for values in settle(store, [dict(row._mapping) for row in rows]):
        try:
            records[values["id"]] = schema.record_from_row(values, MAX_NAME_LENGTH, MAX_MESSAGE_LENGTH)
        except (ValueError, TypeError, KeyError) as error:
            store.skipped.append((values.get("id", "?"), str(error)))
    for run_id, count in counts.items():
        if run_id in records:  # has_weights without loading them
            records[run_id].stored_snapshots = int(count)
    for row in epochs:
        if row.run_id in records:
            records[row.run_id].epochs.append(schema.epoch_dict(row))
    for row in points:
        if row.run_id in records:
            records[row.run_id].batch_steps.append(row.step)
            records[row.run_id].batch_losses.append(schema.unreal(row.loss))
    for row in snapshots:
        weight, bias = schema.bytes_tensor(row.weight), schema.bytes_tensor(row.bias)
        if row.run_id in records and weight is not None and bias is not None:
            records[row.run_id].snapshots.append((row.epoch, weight, bias))
    return list(records.values())


def read_checkpoint_bytes(store: Any, run_id: str) -> bytes:
    """Bytes of the run's checkpoint (for download), built from its newest snapshot."""
    run = store.get(run_id)
    with store._transaction(write=False) as connection:
        row = connection.execute(sa.select(schema.Snapshot).where(schema.Snapshot.run_id == run_id)
                                 .order_by(schema.Snapshot.epoch.desc(), schema.Snapshot.ordinal.desc())
                                 .limit(1)).first()
        normalizer = connection.execute(sa.select(schema.Run.normalizer).where(schema.Run.id == run_id)).scalar()
    weight = bias = None
    if row is not None:
        weight, bias = schema.bytes_tensor(row.weight), schema.bytes_tensor(row.bias)
    if weight is None or bias is None or weight.ndim != 2:
        why = "it is still starting" if run.active else f"it {run.status} before its first evaluation"
        raise CheckpointError(f"run “{run.name}” has no saved weights yet: {why}")
    normalizer = schema.bytes_normalizer(normalizer)
    if normalizer is None or not run.class_names:
        raise CheckpointError(f"run “{run.name}” is missing its normalisation settings, so its "
                              "weights cannot be turned into a checkpoint")
    metrics = {key: float(run.final[key]) for key in FINAL_METRICS
               if isinstance(run.final.get(key), (int, float)) and math.isfinite(run.final[key])}
    metrics.setdefault("epochs_completed", float(row.epoch))
    return make_checkpoint_bytes(LogisticRegression.from_tensors(weight, bias), run.config, run.class_names,
                                 normalizer, metrics)


def read_usage(store: Any) -> int:
    """Bytes the store's data takes (SQLite: the pages in use; elsewhere: the stored values)."""
    with store._transaction(write=False) as connection:
        if store.dialect == "sqlite":
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
            free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
            size = connection.exec_driver_sql("PRAGMA page_size").scalar()
            return int((pages - free) * size)
        length = sa.func.octet_length
        snapshots = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(
            length(schema.Snapshot.weight) + length(schema.Snapshot.bias)), 0))).scalar()
        rows = sum(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() * size
                   for table, size in ((schema.Run, 2000), (schema.Epoch, 100), (schema.BatchLoss, 40),
                                       (schema.Group, 1000), (schema.Meta, 100)))
        return int(snapshots) + int(rows)
