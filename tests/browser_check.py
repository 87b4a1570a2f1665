"""Open a rendered report in headless Chromium and record what the page does.

No Playwright or Selenium: :class:`Chromium` starts the browser with
``--remote-debugging-port=0``, reads the DevTools websocket address from its
stderr and speaks the DevTools protocol over ``websocket-client`` (a dependency
of jupyter_server, so it comes with the notebook stack).

:meth:`Chromium.check_page` opens a ``file://`` page in a fresh tab with every
request intercepted: ``file:``, ``data:`` and ``blob:`` load, anything else is
failed and recorded. Console errors, uncaught exceptions, error log entries and
JavaScript dialogs (dismissed at once) are recorded too. After the load event
it polls until the number of drawn charts stops changing, then returns a
:class:`PageReport`.

Every wait has a deadline, and :meth:`Chromium.close` ends the browser's
process group even when the protocol is stuck.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

__all__ = ["CHROMIUM", "BrowserError", "Chromium", "PageReport"]

#: The browser (Debian's ``chromium`` package; ``QUALITYLAB_CHROMIUM`` overrides).
CHROMIUM = Path(os.environ.get("QUALITYLAB_CHROMIUM", "/usr/bin/chromium"))
#: URL schemes that stay on the machine.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
)

#: Chart containers, those vega drew (an svg with marks), fallbacks still shown.
COUNT_JS = """(() => {
  const charts = Array.from(document.querySelectorAll(".qualitylab-chart"));
  const drawn = charts.filter((c) => c.classList.contains("vega-embed")
      && c.querySelector("svg.marks g.mark-group, svg.marks path")).length;
  return {charts: charts.length, drawn: drawn,
          fallbacks: document.querySelectorAll(".qualitylab-chart-fallback").length};
})()"""

#: What a reader sees: visible text (no script/style), code, stderr, dead TOC links.
PAGE_JS = """(() => {
  const skip = (n) => n.parentElement && n.parentElement.closest("script, style, head");
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT,
      {acceptNode: (n) => skip(n) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const parts = [];
  while (walker.nextNode()) { parts.push(walker.currentNode.nodeValue); }
  const links = Array.from(document.querySelectorAll("nav.ql-toc a[href^='#']"));
  const dead = links.map((a) => a.getAttribute("href"))
      .filter((h) => !document.getElementById(decodeURIComponent(h.slice(1))));
  return {
    text: parts.join("\\n"),
    title: document.title,
    codeInputs: document.querySelectorAll(
        ".jp-CodeCell .jp-InputArea, .jp-InputPrompt, .jp-OutputPrompt").length,
    stderrOutputs: document.querySelectorAll(
        "[data-mime-type='application/vnd.jupyter.stderr']").length,
    tocLinks: links.length,
    deadTocLinks: dead,
    links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
  };
})()"""


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or did not answer in time."""


@dataclass
class PageReport:
    """What happened while a page loaded and drew its charts."""

    url: str
    charts: int = 0
    drawn: int = 0
    fallbacks: int = 0
    code_inputs: int = 0
    stderr_outputs: int = 0
    toc_links: int = 0
    dead_toc_links: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    title: str = ""
    text: str = ""
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    loaded: bool = False
    seconds: float = 0.0

    def problems(self) -> dict[str, list[str]]:
        """Everything that should be empty on a healthy offline page."""
        found = {
            "blocked requests": self.blocked,
            "console errors": self.console_errors,
            "exceptions": self.exceptions,
            "error log entries": self.log_errors,
            "dialogs": self.dialogs,
        }
        return {k: v for k, v in found.items() if v}


def _is_local(url: str) -> bool:
    return url.startswith(LOCAL_SCHEMES)


def _remote_object(obj: dict[str, Any]) -> str:
    if "value" in obj:
        return str(obj["value"])
    return str(obj.get("description") or obj.get("type", "?"))


class _Tab:
    """Event handling for one attached page (flattened session)."""

    def __init__(self, browser: Chromium, session: str, report: PageReport) -> None:
        self.browser = browser
        self.session = session
        self.report = report

    def handle(self, method: str, params: dict[str, Any]) -> None:
        r = self.report
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if _is_local(url):
                self.browser.send(
                    "Fetch.continueRequest", {"requestId": params["requestId"]}, self.session
                )
            else:
                if url not in r.blocked:
                    r.blocked.append(url)
                self.browser.send(
                    "Fetch.failRequest",
                    {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                    self.session,
                )
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            r.requests.append(url[:200])
            if not _is_local(url) and url not in r.blocked:
                r.blocked.append(url)
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            r.console_errors.append(" ".join(_remote_object(a) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            r.exceptions.append(f"{details.get('text', '')} {exc.get('description', '')}".strip())
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                r.log_errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Page.javascriptDialogOpening":
            r.dialogs.append(f"{params.get('type')}: {params.get('message')}")
            self.browser.send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
        elif method == "Page.loadEventFired":
            r.loaded = True


class Chromium:
    """Headless Chromium driven over the DevTools protocol; use as a context manager.

    Parameters
    ----------
    profile : Path
        An empty folder for the throwaway user profile.
    executable : Path
        The browser.
    timeout : float
        Seconds to wait for the browser to start and for each protocol answer.
    """

    def __init__(self, profile: Path, *, executable: Path = CHROMIUM, timeout: float = 30.0):
        self.profile = profile
        self.executable = executable
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self._ws: websocket.WebSocket | None = None
        self._next_id = 0
        self._tabs: dict[str, _Tab] = {}
        self._stderr: deque[str] = deque(maxlen=50)
        self._drain: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------- #
    def __enter__(self) -> Chromium:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch the browser and connect to its DevTools websocket."""
        self.profile.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [str(self.executable), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group, ended as a whole in close()
        )
        lines: queue.Queue[str] = queue.Queue()

        def drain(stream: Any) -> None:
            for line in stream:
                self._stderr.append(line.rstrip())
                lines.put(line)

        self._drain = threading.Thread(target=drain, args=(self._proc.stderr,), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + self.timeout
        url = None
        while url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._proc.poll() is not None:
                raise BrowserError(
                    f"{self.executable} gave no DevTools address within {self.timeout:.0f} s "
                    f"(exit code {self._proc.poll()}); stderr:\n" + "\n".join(self._stderr)
                )
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            url = match.group(1) if match else None
        self._ws = websocket.create_connection(url, timeout=self.timeout, suppress_origin=True)

    def close(self) -> None:
        """Close the browser; kill its process group if it does not exit in 5 s."""
        if self._ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.send("Browser.close")
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self._ws.close()
            self._ws = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)  # the group started in start(): helpers too
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
        if self._drain is not None:
            self._drain.join(timeout=5)  # stderr ends with the last process of the group
        if proc.stderr is not None and not (self._drain and self._drain.is_alive()):
            proc.stderr.close()

    # -- protocol ---------------------------------------------------------- #
    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> int:
        """Send a command without waiting for its answer; returns its id."""
        if self._ws is None:
            raise BrowserError("the browser is not running")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        return self._next_id

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str = "",
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send a command and return its result, handling events meanwhile."""
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self._receive(deadline)
            if message is None:
                raise BrowserError(f"no answer to {method} within the timeout")
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return message.get("result", {})

    def pump(self, seconds: float) -> None:
        """Handle events for ``seconds``."""
        deadline = time.monotonic() + seconds
        while self._receive(deadline) is not None:
            pass

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message (events are dispatched first), or None at the deadline."""
        if self._ws is None:
            raise BrowserError("the browser is not running")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self._ws.settimeout(remaining)
        try:
            raw = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        message = json.loads(raw)
        tab = self._tabs.get(message.get("sessionId", ""))
        if tab is not None and "method" in message:
            tab.handle(message["method"], message.get("params", {}))
        return message

    def evaluate(self, expression: str, session: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    # -- the check --------------------------------------------------------- #
    def check_page(
        self, path: Path, *, load_timeout: float = 60.0, settle_timeout: float = 15.0
    ) -> PageReport:
        """Open ``path`` offline in a fresh tab and report what happened.

        Waits for the load event (``load_timeout``), then polls the chart count
        until every chart is drawn and the count held for 0.5 s, or it held
        for 3 s, or ``settle_timeout`` passed.
        """
        started = time.monotonic()
        report = PageReport(url=path.resolve().as_uri())
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = ""
        try:
            session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            self._tabs[session] = _Tab(self, session, report)
            for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
                self.call(method, {}, session)
            self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session)
            self.call("Page.navigate", {"url": report.url}, session)
            deadline = time.monotonic() + load_timeout
            while not report.loaded:
                if self._receive(deadline) is None:
                    raise BrowserError(f"{path.name} did not load within {load_timeout:.0f} s")
            self._settle(session, report, settle_timeout)
            page = self.evaluate(PAGE_JS, session)
            report.text = page["text"]
            report.title = page["title"]
            report.code_inputs = page["codeInputs"]
            report.stderr_outputs = page["stderrOutputs"]
            report.toc_links = page["tocLinks"]
            report.dead_toc_links = page["deadTocLinks"]
            report.links = page["links"]
            self.pump(0.3)  # late console messages
        finally:
            self._tabs.pop(session, None)
            with contextlib.suppress(BrowserError):
                self.call("Target.closeTarget", {"targetId": target}, timeout=10)
        report.seconds = time.monotonic() - started
        return report

    def _settle(self, session: str, report: PageReport, timeout: float) -> None:
        end = time.monotonic() + timeout
        last: dict[str, int] | None = None
        since = time.monotonic()
        while True:
            self.pump(0.25)
            counts = self.evaluate(COUNT_JS, session)
            now = time.monotonic()
            if counts != last:
                last, since = counts, now
            report.charts, report.drawn, report.fallbacks = (
                counts["charts"],
                counts["drawn"],
                counts["fallbacks"],
            )
            held = now - since
            if (counts["drawn"] == counts["charts"] and held >= 0.5) or held >= 3 or now >= end:
                return
