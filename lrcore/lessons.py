"""A teacher's lesson: fixed settings, hidden controls, an instruction text and the pages allowed.

    lesson = Lesson("Learning rates", "Try three rates.", fixed={"epochs": 5}, hidden=("seed",))
    token = encode(lesson, teacher_key())   # goes into the link: /train?lesson=TOKEN
    decode(token, teacher_key())             # == lesson; LessonError for a changed or cut-off link

A token is the lesson as compact JSON in base64url, a dot, and an HMAC-SHA256 of that text with a
key derived from the teacher key: a student can read it but not change it (a fixed setting stays
fixed) without the server noticing. Fixed values are checked by the settings table's own rules
(lrcore/settings.py), so a lesson cannot fix a setting to a value a run would refuse.

No streamlit here: ui/lessons.py puts a lesson on the pages.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from .config import defaults_for
from .settings import BY_NAME, SETTINGS

# The dashboard's pages by URL path ("" is Home, the default page), with the names people read.
PAGES: dict[str, str] = {"home": "Home", "data": "Data", "train": "Train", "weights": "Weights", "draw": "Draw",
                         "evaluate": "Evaluate", "runs": "Runs", "sweep": "Sweep", "board": "Class board"}
# Settings a lesson may fix or hide: those with a control on the Train page. The dataset is chosen on
# the Data page and is not fixed by lessons.
LESSON_SETTINGS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.label)
MAX_TITLE = 80
MAX_TEXT = 1000
MAX_TOKEN = 6000  # characters; a lesson at every limit encodes to about 3,000
FORMAT = 1  # "v" in the token: a later format can still read this one
KEY_CONTEXT = b"lrcore-lesson"  # the signing key is HMAC(teacher key, this): not the teacher key itself
CHANGED = "This lesson link was changed or cut off: ask your teacher for the link again."


class LessonError(ValueError):
    """A lesson that cannot be made or a token that cannot be read; the message is for people."""


@dataclass(frozen=True)
class Lesson:
    """What a lesson link gives a student. `fixed`: setting name -> value (the student cannot change it);
    `hidden`: fixed settings whose controls are not shown; `pages`: allowed URL paths, () = every page."""

    title: str
    text: str = ""
    fixed: dict = field(default_factory=dict)
    hidden: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = lesson_problems(self.title, self.text, self.fixed, self.hidden, self.pages)
        if problems:
            raise LessonError("This lesson cannot be made: " + "; ".join(problems) + ".")
        # canonical form (frozen: set once here), so equal lessons have equal ids and tokens
        fixed = {name: _canonical(name, self.fixed[name]) for name in sorted(self.fixed)}
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "hidden", tuple(sorted(set(self.hidden))))
        object.__setattr__(self, "pages", tuple(path for path in PAGES if path in self.pages))
        object.__setattr__(self, "title", self.title.strip())
        object.__setattr__(self, "text", self.text.strip())

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT, "title": self.title, "text": self.text, "fixed": self.fixed,
                "hidden": list(self.hidden), "pages": list(self.pages)}

    @property
    def lesson_id(self) -> str:
        """12 hex characters from the lesson's content: the same lesson always has the same id."""
        return hashlib.sha256(_compact(self.to_dict()).encode()).hexdigest()[:12]

    def allows_page(self, url_path: str) -> bool:
        """Whether the page at `url_path` ("" = Home) is part of this lesson."""
        return not self.pages or (url_path or "home") in self.pages

    def is_fixed(self, name: str) -> bool:
        return name in self.fixed

    def is_hidden(self, name: str) -> bool:
        return name in self.hidden

    def mismatches(self, values: Mapping[str, Any]) -> dict[str, str]:
        """{setting: "must be ... (fixed by the lesson)"} for each fixed setting `values` has otherwise."""
        return {name: f"is fixed by the lesson at {BY_NAME[name].text(value)}, got "
                      f"{BY_NAME[name].text(values.get(name))}"
                for name, value in self.fixed.items() if not _same(values.get(name), value)}


def lesson_problems(title: Any, text: Any, fixed: Any, hidden: Any, pages: Any) -> list[str]:
    """What is wrong with a lesson's parts, in words (empty when nothing is)."""
    problems = []
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > MAX_TITLE:
        problems.append(f"the title must be 1 to {MAX_TITLE} characters")
    if not isinstance(text, str) or len(text.strip()) > MAX_TEXT:
        problems.append(f"the instruction text must be at most {MAX_TEXT} characters")
    if not isinstance(fixed, Mapping):
        return problems + ["the fixed settings must be a table of setting names and values"]
    unknown = [str(name) for name in fixed if name not in LESSON_SETTINGS]
    if unknown:
        problems.append(f"{', '.join(unknown)[:200]} cannot be fixed (settings a lesson can fix: "
                        f"{', '.join(LESSON_SETTINGS)})")
    # The one validation of settings (lrcore/settings.py): each fixed value over the defaults.
    values = {**defaults_for(SETTINGS[0].default), **{k: v for k, v in fixed.items() if k in LESSON_SETTINGS}}
    for name in fixed:
        if name in LESSON_SETTINGS:
            problem = _value_problem(name, values[name])
            if problem:
                problems.append(f"{BY_NAME[name].long} {problem}")
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(name, str) for name in hidden):
        problems.append("the hidden settings must be a list of setting names")
    else:
        loose = [name for name in hidden if name not in fixed]
        if loose:
            problems.append(f"a hidden setting must also be fixed (a student could not see its value): "
                            f"{', '.join(loose)[:200]}")
    if not isinstance(pages, (list, tuple)) or not all(isinstance(path, str) for path in pages):
        problems.append("the pages must be a list of page names")
    else:
        wrong = [path for path in pages if path not in PAGES]
        if wrong:
            problems.append(f"unknown pages {', '.join(wrong)[:200]} (pages: {', '.join(PAGES)})")
        elif pages and "train" not in pages:
            problems.append("the pages must include train (a lesson link opens the Train page)")
    return problems


def _value_problem(name: str, value: Any) -> str | None:
    """TrainConfig's rule for the setting, then a link's (the widgets' range and decimals)."""
    setting = BY_NAME[name]
    problem = setting.problem(value)
    if problem is None:
        # a number as written (word() would round it to the allowed decimals first)
        text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else setting.word(value)
        try:
            setting.parse(text)
        except ValueError:
            problem = f"must be {setting.allowed_text()}, got {text}"
    return problem


def _canonical(name: str, value: Any) -> Any:
    """A valid value in one form: floats as floats (1 and 1.0 fix the same learning rate)."""
    if BY_NAME[name].kind is float and value is not None:
        return float(value)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal values (True is not 1; None only equals None)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return a == b


def _compact(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _signing_key(teacher_key: str) -> bytes:
    return hmac.new(teacher_key.encode("utf-8"), KEY_CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    """base64url without padding -> bytes; ValueError for anything else (standard base64 included)."""
    if not text or not all(ch.isalnum() or ch in "-_" for ch in text) or not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, teacher_key: str) -> str:
    return _b64(hmac.new(_signing_key(teacher_key), payload.encode("ascii"), hashlib.sha256).digest())


def encode(lesson: Lesson, key: str) -> str:
    """The lesson as a URL-safe token: base64url(JSON) "." base64url(HMAC-SHA256)."""
    if not isinstance(key, str) or not key:
        raise LessonError("Lessons need a teacher key on this server.")
    payload = _b64(_compact(lesson.to_dict()).encode("utf-8"))
    return f"{payload}.{_signature(payload, key)}"


def decode(token: str, key: str) -> Lesson:
    """The lesson in `token`; LessonError (for the student to read) when it was changed, cut off,
    signed with another key or fixes settings this server does not accept."""
    if not isinstance(key, str) or not key:
        raise LessonError("Lessons need a teacher key on this server: this server has none, so it cannot "
                          "open lesson links.")
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LessonError(CHANGED)
    payload, signature = token.split(".")
    if not (payload.isascii() and signature.isascii()):  # compare_digest takes ASCII strings only
        raise LessonError(CHANGED)
    if not hmac.compare_digest(signature, _signature(payload, key)):
        raise LessonError(CHANGED)
    try:
        data = json.loads(_unb64(payload).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):  # signed, yet unreadable: not ours
        raise LessonError(CHANGED) from None
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        raise LessonError("This lesson link was made by another version of the dashboard: ask your teacher "
                          "for a new link.")
    try:
        return Lesson(title=data.get("title"), text=data.get("text", ""), fixed=data.get("fixed", {}),
                      hidden=tuple(data.get("hidden", ())), pages=tuple(data.get("pages", ())))
    except LessonError as error:  # e.g. a setting this version allows no longer
        raise LessonError(f"This lesson link cannot be used on this server ({str(error)[:300]}) Ask your teacher "
                          "for a new link.") from None
    except TypeError:
        raise LessonError(CHANGED) from None
