"""The lessons a teacher made, kept in the run store so the class board can list them.

    store.save_lesson(lesson, token)    # once per lesson id (the same lesson again: kept as it was)
    store.lessons()                     # SavedLesson rows (lesson_id, title, token, created), newest first

Its own table (`lrcore_lessons`), created on first use beside the run tables: a store made by an
older version simply has no lessons yet, so the run schema's version is not involved.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from .lessons import Lesson, LessonError, decode
from .store_setup import StoreError, describe_write_error

METADATA = sa.MetaData()
LESSONS = sa.Table(
    "lrcore_lessons", METADATA,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("token", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True)
class SavedLesson:
    lesson_id: str
    title: str
    token: str
    created: float

    def lesson(self, key: str) -> Lesson:
        """The lesson itself (LessonError when the teacher key changed since it was made)."""
        return decode(self.token, key)


def _ensure_table(store) -> None:
    # checked on each call (one cheap query): lessons are made rarely, and a store file replaced
    # while the server runs must not lose the table
    try:
        METADATA.create_all(store.engine, checkfirst=True)
    except sa_exc.SQLAlchemyError:  # another session created it between the check and the create
        if not sa.inspect(store.engine).has_table(LESSONS.name):
            raise


def save_lesson(store, lesson: Lesson, token: str) -> None:
    """Remember `lesson` (and the token of its link); StoreError says why it could not be saved."""
    try:
        _ensure_table(store)
        with store.engine.begin() as connection:
            found = connection.execute(sa.select(LESSONS.c.id).where(LESSONS.c.id == lesson.lesson_id)).first()
            if found is None:
                connection.execute(LESSONS.insert().values(id=lesson.lesson_id, title=lesson.title, token=token,
                                                           created=time.time()))
    except sa_exc.IntegrityError:  # the same lesson saved at the same moment by another session
        return
    except (OSError, sa_exc.SQLAlchemyError) as error:
        raise StoreError(f"the lesson could not be saved in the run store: {describe_write_error(error)}") from None


def saved_lessons(store) -> list[SavedLesson]:
    """Every saved lesson, newest first ([] when the store has none)."""
    try:
        _ensure_table(store)
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(LESSONS).order_by(LESSONS.c.created.desc())).all()
    except (OSError, sa_exc.SQLAlchemyError) as error:
        raise StoreError(f"the lessons could not be read from the run store: {describe_write_error(error)}") from None
    return [SavedLesson(row.id, row.title, row.token, row.created) for row in rows]


class LessonsMixin:
    """`Store.save_lesson(lesson, token)` and `Store.lessons()` (the Store class takes this mixin)."""

    def save_lesson(self, lesson: Lesson, token: str) -> None:
        save_lesson(self, lesson, token)

    def lessons(self) -> list[SavedLesson]:
        return saved_lessons(self)


__all__ = ["LESSONS", "LessonError", "LessonsMixin", "SavedLesson", "save_lesson", "saved_lessons"]
