"""A Streamlit "browser tab" without a browser: it speaks the frontend's websocket protocol.

bench/bench_class.py simulates a class of students; Chromium tabs for each of them would load the
machine more than the server does. A `StreamlitClient` is one coroutine-driven websocket
connection that sends what Streamlit's own frontend (the JavaScript in streamlit/static, version
1.67) sends, and keeps only what a test needs from the answers (the newest element at each place on
the page), without rendering anything:

- the handshake: `ws://host/_stcore/stream`, subprotocols `streamlit` + the frontend's placeholder
  auth token (no XSRF cookie: no page was loaded over HTTP), the page's Origin, and the cookies given
  (e.g. the dashboard's identity cookie), per-message deflate as browsers negotiate it;
- the first `rerun_script`: the link's query string, no page hash and the page's URL path as
  `page_name` (how the frontend opens /train), no widget states, the browser's context info;
- later reruns: the page hash from `new_session`, the query string the app last set
  (`page_info_changed`), and a state for every widget on the page (a button's trigger only when it is
  pressed), as the frontend's widget manager holds them;
- `auto_rerun`: a timer per fragment that sends a fragment rerun every `interval` seconds, as the
  frontend's setInterval does (it does not wait for the previous run to finish; the server folds
  queued requests together); a full run's `new_session` and `stop_auto_rerun` stop the timers;
- the message cache: large `cacheable` deltas are kept and their hashes sent with each rerun, so
  the server sends `ref_hash` references as it does to a browser; stale entries expire after
  `max_cached_message_age` runs.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

T = TypeVar("T")
# ForwardMsg.ScriptFinishedStatus
FINISHED, FINISHED_WITH_COMPILE_ERROR, FINISHED_EARLY_FOR_RERUN, FINISHED_FRAGMENT_RUN = 0, 1, 2, 3
MAX_MESSAGE_BYTES = 256 * 2**20  # the server's messages may be large (plotly figures); a browser takes them
PLACEHOLDER_AUTH_TOKEN = "PLACEHOLDER_AUTH_TOKEN"  # what the frontend offers without an XSRF cookie


class ClientError(RuntimeError):
    """The connection closed, the server sent something the frontend would reject, or a wait timed out."""


@dataclass
class Node:
    """The newest delta at one place of the page (a delta path)."""

    element: Element | None  # None: a block (container)
    fragment_id: str
    run_id: str  # the script run that sent it (stale nodes are dropped when a run finishes)
    hash: str  # the ForwardMsg's hash: unchanged content, unchanged hash


def widget_state(element: Element) -> WidgetState | None:
    """The state the frontend holds for a widget it has just drawn: the server's value when it set one
    (`set_value`), else the default; None for elements without a value (buttons: only a trigger)."""
    kind = element.WhichOneof("type")
    widget = getattr(element, kind)
    state = WidgetState(id=getattr(widget, "id", ""))
    if not state.id:
        return None
    if kind == "checkbox":
        state.bool_value = widget.value if widget.set_value else widget.default
    elif kind == "number_input":
        value = widget.value if widget.set_value else widget.default
        if widget.data_type == widget.INT:
            state.int_value = int(value)
        else:
            state.double_value = value
    elif kind == "slider":
        if widget.type == widget.SELECT_SLIDER:  # sent as the formatted options (set: raw_value; default: indices)
            state.string_array_value.data.extend(
                widget.raw_value if widget.set_value else [widget.options[int(index)] for index in widget.default])
        else:
            state.double_array_value.data.extend(widget.value if widget.set_value else widget.default)
    elif kind in ("selectbox", "radio"):
        if widget.set_value and widget.HasField("raw_value"):
            state.string_value = widget.raw_value
        elif not widget.set_value and 0 <= widget.default < len(widget.options):
            state.string_value = widget.options[widget.default]
        else:
            return None  # no selection (index=None, or set to None): the frontend sends nothing
    elif kind == "multiselect":
        values = widget.raw_values if widget.set_value else [widget.options[index] for index in widget.default]
        state.string_array_value.data.extend(values)
    elif kind in ("text_input", "text_area"):
        state.string_value = widget.value if widget.set_value else widget.default
    else:  # buttons, charts (no selection), components: no state until the user acts
        return None
    return state


class StreamlitClient:
    """One tab of a Streamlit app over its websocket: connect, rerun, press a button, wait for the page.

    `url`: the app's base (http://127.0.0.1:8501); `path`: the link opened (/train?lesson=...);
    `cookies`: sent in the handshake (the server reads them as st.context.cookies).
    """

    def __init__(self, url: str, path: str = "/", cookies: dict[str, str] | None = None,
                 timezone: str = "UTC", locale: str = "en-US") -> None:
        parts, link = urlsplit(url), urlsplit(path)
        self.http_url = f"{parts.scheme}://{parts.netloc}"
        self.ws_url = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/_stcore/stream"
        self.page_url = f"{self.http_url}{link.path or '/'}"  # the frontend's context url: no query
        self.page_name = (link.path or "/").strip("/")  # the frontend's pageName: the path after the base
        self.query_string = link.query  # then the one the app sets (page_info_changed)
        self.cookies = dict(cookies or {})
        self.context = {"timezone": timezone, "timezone_offset": 0, "locale": locale, "url": self.page_url,
                        "is_embedded": False, "color_scheme": "light"}
        self.page_script_hash = ""  # from new_session and navigation; "" until then (the server goes by page_name)
        self.nodes: dict[tuple[int, ...], Node] = {}
        self._order: list[tuple[int, ...]] | None = None  # the paths in page order (None: to sort again)
        self.widgets: dict[str, WidgetState] = {}  # the frontend's widget manager: id -> state
        self.run_id = ""
        self.run_fragments: tuple[str, ...] = ()  # the fragments the current run reruns (() = full run)
        self.running = False
        self.finished_runs = 0  # script runs (full or fragment) that finished, any status
        self.exceptions: list[str] = []  # exceptions shown (new ones appended; also compile errors)
        self.closed: str | None = None  # why the connection ended
        self.sent = 0  # BackMsgs sent
        self.received = 0  # ForwardMsgs received
        self.received_bytes = 0
        self._cache: dict[str, list] = {}  # hash -> [encoded message, run count at last use, fragment id]
        self._cache_runs = 0
        self._max_cache_age = 2
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (interval, task)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self._chart_points: dict[str, int | None] = {}  # message hash -> points (None: not the chart looked for)

    # ------------------------------------------------------------ connection

    async def connect(self, timeout: float = 30.0) -> None:
        """Open the websocket as the frontend does and ask for the first run of the page."""
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        self._ws = await connect(
            self.ws_url, subprotocols=["streamlit", PLACEHOLDER_AUTH_TOKEN], origin=self.http_url,
            additional_headers={"Cookie": cookie} if cookie else None, max_size=MAX_MESSAGE_BYTES,
            max_queue=None,  # read at once (a slow reader would make the server's send queue fill up)
            open_timeout=timeout, ping_interval=None,  # browsers send no pings
            proxy=None, user_agent_header="lrcore-bench StreamlitClient")
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.rerun()

    async def close(self) -> None:
        """Stop the timers and close the connection (the server ends the session)."""
        self._stop_timers()
        self.closed = self.closed or "closed by the client"
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _send(self, message: BackMsg) -> None:
        if self._ws is None or self.closed:
            raise ClientError(f"cannot send: the connection is closed ({self.closed or 'not connected'})")
        await self._ws.send(message.SerializeToString())
        self.sent += 1

    # ------------------------------------------------------------ what the client sends

    def widget_states(self) -> list[WidgetState]:
        """A state for every widget now on the page, in page order (what the frontend sends)."""
        states = []
        for node in self._ordered_nodes():
            if node.element is not None:
                widget = getattr(node.element, node.element.WhichOneof("type"))
                state = self.widgets.get(getattr(widget, "id", ""))
                if state is not None:
                    states.append(state)
        return states

    async def rerun(self, fragment_id: str = "", auto: bool = False, trigger: str = "") -> float:
        """Send a `rerun_script` with the page's widget states (and `trigger`'s button pressed);
        returns time.perf_counter() when it was sent."""
        state = ClientState(query_string=self.query_string, page_script_hash=self.page_script_hash,
                            fragment_id=fragment_id, is_auto_rerun=auto)
        if not self.page_script_hash:
            state.page_name = self.page_name
        state.widget_states.widgets.extend(self.widget_states())  # none in a tab's first request
        if trigger:
            state.widget_states.widgets.append(WidgetState(id=trigger, trigger_value=True))
        state.cached_message_hashes.extend(self._cache)
        for name, value in self.context.items():
            setattr(state.context_info, name, value)
        sent = time.perf_counter()
        await self._send(BackMsg(rerun_script=state))
        return sent

    async def press(self, id_contains: str, timeout: float = 30.0) -> float:
        """Press the button whose widget id contains `id_contains` once it is enabled and no full run
        is going (the page's widgets all known); returns when the trigger was sent (perf_counter)."""
        button = await self.wait_for(lambda: self.enabled_button(id_contains) if not self._full_run_going()
                                     else None, timeout, f"button {id_contains!r} enabled")
        return await self.rerun(trigger=button.id)

    # ------------------------------------------------------------ what the page shows

    def elements(self, kind: str | None = None) -> Iterator[Element]:
        """The page's elements (of one type, e.g. "progress"), in page order."""
        for node in self._ordered_nodes():
            if node.element is not None and (kind is None or node.element.WhichOneof("type") == kind):
                yield node.element

    def button(self, id_contains: str):
        """The first button whose widget id contains `id_contains` (the key given in the app), or None."""
        return next((element.button for element in self.elements("button") if id_contains in element.button.id),
                    None)

    def enabled_button(self, id_contains: str):
        button = self.button(id_contains)
        return button if button is not None and not button.disabled else None

    def texts(self, kind: str) -> list[str]:
        """The text of every element of one type: progress bars' text, alerts' and markdown's body."""
        out = []
        for element in self.elements(kind):
            widget = getattr(element, kind)
            out.append(getattr(widget, "text", "") or getattr(widget, "body", ""))
        return out

    def chart_points(self, title: str) -> int | None:
        """The most points of a series on the ECharts chart (the Train page's live charts) whose title
        contains `title` (None: no such chart). Each chart's JSON is parsed once (charts that did not
        change keep their hash)."""
        found = None
        for node in self._ordered_nodes():
            if node.element is None or node.element.WhichOneof("type") != "echarts_chart":
                continue
            if node.hash not in self._chart_points:
                spec = node.element.echarts_chart.spec
                points = None
                if title in spec:
                    chart = json.loads(spec)
                    if title in str((chart.get("title") or {}).get("text") or ""):
                        points = max((len(item.get("data") or ()) for item in chart.get("series") or ()), default=0)
                if len(self._chart_points) > 1000:
                    self._chart_points.clear()
                self._chart_points[node.hash] = points
            points = self._chart_points[node.hash]
            if points is not None:
                found = max(found or 0, points)
        return found

    async def wait_for(self, condition: Callable[[], T], timeout: float, what: str = "the condition") -> T:
        """Wait until `condition()` (checked after every message received) is truthy; return it.
        ClientError when the connection closes or `timeout` seconds pass first."""
        deadline = time.perf_counter() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.closed:
                raise ClientError(f"waiting for {what}: the connection closed ({self.closed})")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise ClientError(f"waiting for {what}: timed out after {timeout:g} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------ what the server sends

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for data in self._ws:
                if isinstance(data, str):
                    raise ClientError("the server sent a text frame")
                self.received += 1
                self.received_bytes += len(data)
                message = ForwardMsg()
                message.ParseFromString(data)
                self._handle(message, data)
                self._changed.set()
        except ConnectionClosed as closed:
            self.closed = self.closed or f"closed with code {closed.rcvd.code if closed.rcvd else 'none'}"
        except Exception as error:  # noqa: BLE001 - a message the client cannot handle ends it, said in `closed`
            self.closed = f"{type(error).__name__}: {error}"
            if self._ws is not None:
                await self._ws.close()
        else:
            self.closed = self.closed or "closed by the server"
        finally:
            self.closed = self.closed or "closed"
            self._stop_timers()
            self._changed.set()

    def _handle(self, message: ForwardMsg, data: bytes) -> None:
        kind = message.WhichOneof("type")
        if kind == "ref_hash":  # a cached message: the frontend takes its copy, with the new metadata
            cached = self._cache.get(message.ref_hash)
            if cached is None:
                raise ClientError(f"cached ForwardMsg miss (hash {message.ref_hash})")
            cached[1] = self._cache_runs
            metadata = message.metadata
            message = ForwardMsg()
            message.ParseFromString(cached[0])
            message.metadata.CopyFrom(metadata)
            kind = message.WhichOneof("type")
        elif message.metadata.cacheable and message.hash and message.hash not in self._cache:
            self._cache[message.hash] = [data, self._cache_runs, message.delta.fragment_id]
        if kind == "new_session":
            self._new_session(message)
        elif kind == "delta":
            self._delta(message)
        elif kind == "script_finished":
            self._script_finished(message.script_finished)
        elif kind == "navigation":  # st.navigation says which page this is: later reruns name its hash
            self.page_script_hash = message.navigation.page_script_hash or self.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = message.page_info_changed.query_string
        elif kind == "auto_rerun":
            self._auto_rerun(message.auto_rerun.fragment_id, message.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            for fragment_id in message.stop_auto_rerun.fragment_ids:
                self._stop_timer(fragment_id)
        elif kind == "session_event" and message.session_event.WhichOneof("type") == "script_compilation_exception":
            self.exceptions.append(f"compile error: {message.session_event.script_compilation_exception.message}")
        # the rest (navigation, page config, logo, session status, git info...) changes nothing tested here

    def _new_session(self, message: ForwardMsg) -> None:
        session = message.new_session
        self.running = True
        self.run_id = message.metadata.run.script_run_id
        self.run_fragments = tuple(message.metadata.run.fragment_ids)
        self._max_cache_age = session.config.max_cached_message_age
        if not self.run_fragments:  # a full run: the frontend clears every auto-rerun timer
            self._stop_timers()
            if session.page_script_hash != self.page_script_hash and self.page_script_hash:
                self.nodes.clear()  # another page
                self._order = None
            self.page_script_hash = session.page_script_hash

    def _delta(self, message: ForwardMsg) -> None:
        delta, path = message.delta, tuple(message.metadata.delta_path)
        which = delta.WhichOneof("type")
        if which == "new_transient":  # spinners, toasts: nothing kept
            return
        element = delta.new_element if which == "new_element" else None
        if element is not None:  # an element in place of a block: the block's children are gone
            for child in [key for key in self.nodes if len(key) > len(path) and key[:len(path)] == path]:
                del self.nodes[child]
                self._order = None
            state = widget_state(element)
            if state is not None and (state.id not in self.widgets or getattr(
                    getattr(element, element.WhichOneof("type")), "set_value", False)):
                self.widgets[state.id] = state
            if element.WhichOneof("type") == "exception":
                text = f"{element.exception.type}: {element.exception.message}"
                self.exceptions.append(text[:300])
        if path not in self.nodes:
            self._order = None
        self.nodes[path] = Node(element, delta.fragment_id, self.run_id, message.hash)

    def _script_finished(self, status: int) -> None:
        """As the frontend: drop what this run did not send again (a fragment run: in its fragments), forget
        widgets no longer on the page, age the message cache."""
        self.running = False
        self.finished_runs += 1
        if status in (FINISHED, FINISHED_FRAGMENT_RUN):
            fragments = self.run_fragments
            stale = [path for path, node in self.nodes.items() if node.run_id != self.run_id
                     and (not fragments or node.fragment_id in fragments)]
            for path in stale:
                del self.nodes[path]
            self._order = None if stale else self._order
            active = {getattr(getattr(element, element.WhichOneof("type")), "id", "") for element in self.elements()}
            for widget_id in [key for key in self.widgets if key not in active]:
                del self.widgets[widget_id]
        if status != FINISHED_EARLY_FOR_RERUN:
            self._cache_runs += 1
            for key, (_, used, fragment_id) in list(self._cache.items()):
                in_scope = not self.run_fragments or fragment_id in self.run_fragments
                if in_scope and self._cache_runs - used > self._max_cache_age:
                    del self._cache[key]

    def _full_run_going(self) -> bool:
        return self.running and not self.run_fragments

    def _ordered_nodes(self) -> list[Node]:
        if self._order is None:  # sorted again only when places were added or removed
            self._order = sorted(self.nodes)
        return [self.nodes[path] for path in self._order]

    # ------------------------------------------------------------ fragment polling

    def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        if not fragment_id or interval <= 0:
            return
        if fragment_id in self._timers and self._timers[fragment_id][0] == interval:
            return  # as the frontend: the same interval keeps its timer
        self._stop_timer(fragment_id)
        self._timers[fragment_id] = (interval, asyncio.get_running_loop().create_task(
            self._poll(fragment_id, interval)))

    async def _poll(self, fragment_id: str, interval: float) -> None:
        """setInterval(() => sendUpdateWidgetsMessage(fragmentId, true), interval * 1000)."""
        next_at = time.perf_counter() + interval
        while not self.closed:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            try:
                await self.rerun(fragment_id=fragment_id, auto=True)
            except (ClientError, ConnectionClosed):
                return

    def _stop_timer(self, fragment_id: str) -> None:
        entry = self._timers.pop(fragment_id, None)
        if entry is not None:
            entry[1].cancel()

    def _stop_timers(self) -> None:
        for fragment_id in list(self._timers):
            self._stop_timer(fragment_id)
