"""Who may do what on a class server: the teacher key, browser identities and run ownership.

    class_mode()                      # a teacher key is configured (else: a personal dashboard, as before)
    owner_id(token)                   # the public id of a browser, from its secret token
    can_control(viewer, run.owner)    # may this browser pause, stop, rename or delete that run?

No streamlit here: the pages (ui/identity.py) find out who is looking, this module decides.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

TEACHER_KEY_ENV = "LRCORE_TEACHER_KEY"
SECRETS_FILE = Path(".streamlit") / "secrets.toml"  # relative to the server's working directory
MAX_DISPLAY_NAME = 40


def teacher_key() -> str | None:
    """$LRCORE_TEACHER_KEY, else `teacher_key` in .streamlit/secrets.toml of the working directory, else None."""
    key = os.environ.get(TEACHER_KEY_ENV, "").strip()
    if key:
        return key
    try:
        with SECRETS_FILE.open("rb") as file:
            value = tomllib.load(file).get("teacher_key")
    except (OSError, tomllib.TOMLDecodeError):  # no secrets file, or one that is not TOML: no key
        return None
    return value.strip() or None if isinstance(value, str) else None


def class_mode() -> bool:
    """A teacher key is configured: runs have owners and only they (and the teacher) control them."""
    return teacher_key() is not None


def owner_id(token: str) -> str:
    """The public id of the browser holding `token` (the token itself is never shown or stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def key_fingerprint(key: str) -> str:
    """What the server remembers of the key that made a browser teacher: a changed key revokes it."""
    return hashlib.sha256(b"lrcore-teacher-key:" + key.encode("utf-8")).hexdigest()[:16]


def check_teacher_key(typed: str) -> bool:
    """Whether `typed` is the configured teacher key (compared in constant time)."""
    key = teacher_key()
    if key is None or not isinstance(typed, str):
        return False
    return hmac.compare_digest(typed.strip().encode("utf-8"), key.encode("utf-8"))


@dataclass(frozen=True)
class Viewer:
    """The browser looking at a page: its owner id ("" while it has none yet), name and powers."""

    owner: str
    name: str = ""
    teacher: bool = False
    class_mode: bool = False


def can_control(viewer: Viewer, run_owner: str) -> bool:
    """May `viewer` pause, stop, change, rename or delete a run owned by `run_owner`?

    Always outside class mode (a personal dashboard); in class mode the teacher and the run's owner
    (an anonymous browser owns nothing, and a run without an owner belongs to nobody but the teacher)."""
    if not viewer.class_mode or viewer.teacher:
        return True
    return bool(viewer.owner) and run_owner == viewer.owner


def clean_display_name(name: str) -> str:
    """A display name on one line, 1 to MAX_DISPLAY_NAME characters; ValueError says what is wrong."""
    text = " ".join("".join(ch for ch in str(name) if ch.isprintable()).split())
    if not text:
        raise ValueError("a name cannot be empty")
    if len(text) > MAX_DISPLAY_NAME:
        raise ValueError(f"a name is at most {MAX_DISPLAY_NAME} characters, got {len(text)}")
    return text


def not_yours_note(owner_name: str) -> str:
    """The one line under a run's disabled controls, for anyone who may watch it but not change it."""
    who = owner_name or "another student"
    return f"This run belongs to {who}: you can watch it, not change it. Start your own with these settings."
