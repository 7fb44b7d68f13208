"""Runs recorded straight into a store, as `python -m lrcore train` does, and rows edited in place."""
from __future__ import annotations

import sqlalchemy as sa

from lrcore import events as ev
from lrcore import store_schema as schema
from lrcore.config import TrainConfig
from lrcore.jobs import new_id
from lrcore.naming import default_run_name
from lrcore.record import RunRecord, crash, fold
from lrcore.store import Store
from lrcore.training import train


def record_run(store: Store, config: TrainConfig, name: str | None = None, dataset=None,
               crash_after_epoch: int | None = None) -> str:
    """Train `config` and save it through the store's writer; its run id (crashed after an epoch if asked)."""
    record = RunRecord(new_id(), name or default_run_name(config), config, source="cli")
    writer = store.writer(record)
    for event in train(config, dataset):
        fold(record, event)
        writer.write(record, event)
        if isinstance(event, ev.EpochEnd) and event.epoch == crash_after_epoch:
            crash(record, "the server was restarted")
            writer.write(record, None)
            break
    writer.close()
    return record.run_id


def edit_run(store: Store, run_id: str, **values) -> None:
    """Change a stored run's row directly (what an older or damaged store could hold)."""
    with store.engine.begin() as connection:
        connection.execute(sa.update(schema.Run).where(schema.Run.id == run_id).values(**values))
