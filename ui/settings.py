"""Widgets for the training settings, built from their table entry (lrcore/settings.py).

The Train and Sweep pages both call `setting_widget`, so the two offer every setting with
the same label, help text and range.
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from lrcore.settings import BY_NAME


def setting_widget(widget: Callable | None, name: str, key: str, help_extra: str = "", **overrides: Any) -> Any:
    """`widget` (st.slider, st.number_input, st.radio, st.selectbox, st.toggle or a column's)
    for setting `name`: its label, help, choices or range and step from the table; `overrides` win.
    widget None: a toggle, a selectbox or a number box, by the setting's type."""
    setting = BY_NAME[name]
    if widget is None:
        widget = st.toggle if setting.kind is bool else st.selectbox if setting.kind is str else st.number_input
    options: dict[str, Any] = {"label": setting.label, "key": key, "persist_state": "session",
                               "help": (setting.help + help_extra) or None}
    if setting.kind is str:
        options.update(options=setting.choices, format_func=lambda value: setting.labels.get(value, value))
    elif setting.kind is not bool:
        closed = widget.__name__ == "slider" or not setting.range_rule  # lr: the page reports a bad value
        options.update(min_value=setting.lowest if closed else None,
                       max_value=setting.highest if closed and setting.ui_high is None else None,
                       step=setting.step or (1 if setting.kind is int else 0.01))
        if widget.__name__ == "slider":
            options["max_value"] = setting.highest
        if setting.kind is float:
            options["format"] = f"%.{setting.decimals}f" if setting.decimals is not None else "%g"
    return widget(**{**options, **overrides})
