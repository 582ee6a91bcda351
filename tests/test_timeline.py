"""The postmortem timeline page (``--html``) in a real headless Chromium.

The browser is driven over the DevTools protocol on a pipe, so a test waits for the page's
own "ready" state, reads what the page says it drew (``<body data-range>``, ``data-drawn``),
clicks like a user, and sees every console message, exception and network request. Expected
values come from the analysis's own tables (pandas), never from the renderer: the slices of
a window, the records of a call site, the goroutines that called the library.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tracecorr.correlator.api import Analysis, analyze
from tracecorr.correlator.render.html import deep_link, figure, page, write_html
from tracecorr.correlator.render.timeline.data import capture_start_ns

from sample_traces.capture import GoOptions, PyOptions, capture_go, capture_py
from tests.conftest import ROOT, SAMPLES, require

HOSTILE = '<script>document.body.setAttribute("data-pwned","1")</script>"q"</div>'
HOSTILE_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
MS = 1_000_000


# ------------------------------------------------------------------------------ the browser


class Chromium:
    """Headless Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    the browser reads commands on fd 3 and writes replies and events on fd 4, each message
    JSON ending in a NUL byte). No websocket library, no port to find."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # the child's fds 3 and 4, duplicated high first so that dup2 cannot clobber them
        child_in = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
        child_out = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)

        def wire() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=wire,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self.write_fd, self.read_fd = to_chrome_w, from_chrome_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 120
        while True:
            m = self._message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the pipe")
                self.buf += chunk
        m, _, self.buf = self.buf.partition(b"\0")
        return json.loads(m)

    def open(self, url: str, width: int = 1400, height: int = 1000) -> Tab:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Page", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        tab = Tab(self, session, target)
        self.call("Page.navigate", {"url": url}, session=session)
        tab.wait("['ready', 'error'].includes(document.body && document.body.dataset.state)")
        return tab

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, EOFError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write_fd)
        os.close(self.read_fd)


class Tab:
    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.b, self.session, self.target = browser, session, target

    def eval(self, expression: str):
        r = self.b.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise TimeoutError(expression)
            time.sleep(0.05)

    def redrawn(self, action: str):
        """Run *action* and wait for the page's next redraw; its data-drawn."""
        self.eval(
            "window.__drawn = false; document.addEventListener('tracecorr:drawn', "
            "() => { window.__drawn = true; }, {once: true}); 0"
        )
        self.eval(action)
        self.wait("window.__drawn")
        return self.drawn()

    def mouse(self, kind: str, x: float, y: float, **extra) -> None:
        """A real input event (mousePressed / mouseMoved / mouseReleased / mouseWheel)."""
        params = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1, **extra}
        if kind == "mouseMoved":
            params["buttons"] = extra.get("buttons", 0)
        self.b.call("Input.dispatchMouseEvent", params, session=self.session)

    def drawn(self) -> dict:
        return json.loads(self.eval("document.body.dataset.drawn"))

    def range(self) -> tuple[int, int]:
        s, e = self.eval("document.body.dataset.range").split(",")
        return int(s), int(e)

    def _mine(self, method: str) -> list[dict]:
        return [
            e["params"]
            for e in self.b.events
            if e.get("sessionId") == self.session and e.get("method") == method
        ]

    def problems(self) -> list[str]:
        """Console output, uncaught exceptions and browser log errors of this tab."""
        out = [
            f"console.{p['type']}: {p.get('args')}" for p in self._mine("Runtime.consoleAPICalled")
        ]
        out += [
            f"exception: {p['exceptionDetails']}" for p in self._mine("Runtime.exceptionThrown")
        ]
        out += [
            f"log {p['entry']['level']}: {p['entry'].get('text')}"
            for p in self._mine("Log.entryAdded")
            if p["entry"]["level"] in ("error", "warning")
        ]
        return out

    def requests(self) -> list[str]:
        return [p["request"]["url"] for p in self._mine("Network.requestWillBeSent")]

    def close(self) -> None:
        self.b.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    path = shutil.which("chromium")
    require(path is not None, "chromium (Debian package)")
    b = Chromium(path, tmp_path_factory.mktemp("chrome"))
    yield b
    b.close()


def load(browser: Chromium, html: Path, fragment: str = "", height: int = 1000) -> Tab:
    """Open *html* (at *fragment*); fail on any console output, exception or request that
    leaves the file."""
    tab = browser.open(html.as_uri() + fragment, height=height)
    assert tab.eval("document.body.dataset.state") == "ready", tab.eval(
        "document.getElementById('tc-error').textContent"
    )
    assert not tab.problems(), tab.problems()
    outside = [u for u in tab.requests() if not u.startswith(html.as_uri().split("#")[0])]
    assert not outside, outside
    return tab


# ------------------------------------------------------------------------------ the data


@pytest.fixture(scope="module")
def go_analysis() -> Analysis:
    return analyze([str(SAMPLES / "go_hiredis")])


@pytest.fixture(scope="module")
def py_analysis() -> Analysis:
    return analyze([str(SAMPLES / "py_hiredis")])


@pytest.fixture(scope="module")
def go_page(go_analysis, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("go_page") / "go.html"
    write_html(go_analysis, out)
    return out


@pytest.fixture(scope="module")
def py_page(py_analysis, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("py_page") / "py.html"
    write_html(py_analysis, out)
    return out


@pytest.fixture(scope="module")
def fresh_go_analysis(go_capture) -> Analysis:
    """The session's own Go + cgo + hiredis capture under perf (tests/conftest.py)."""
    return analyze([str(go_capture)])


@pytest.fixture(scope="module")
def fresh_go_page(fresh_go_analysis, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fresh_go_page") / "fresh.html"
    write_html(fresh_go_analysis, out)
    return out


def slices_in(a: Analysis, start: int, end: int) -> tuple[dict, dict]:
    """The analysis's own count, per kind, of slices meeting [start, end]: on OS threads
    (the lower pane) and of goroutines (the upper pane)."""
    on = a.slices_on_threads()
    m = (on["ref_ts"] <= end) & (on["ref_ts"] + on["dur"] >= start)
    threads = on.loc[m, "kind"].astype(str).value_counts()
    al = a.aligned_slices()
    al = al[al["ref_ts"].notna()]
    m = (al["ref_ts"] <= end) & (al["ref_ts"] + al["dur"] >= start) & al["goid"].notna()
    gor = al.loc[m, "kind"].astype(str).value_counts()
    return (
        {k: int(v) for k, v in threads.items() if v},
        {k: int(v) for k, v in gor.items() if v},
    )


def nonzero(d: dict) -> dict:
    return {k: int(v) for k, v in d.items() if v}


def goroutines_of_interest(a: Analysis) -> list[int]:
    g = set(pd.to_numeric(a.blocking["goid"], errors="coerce").dropna().astype(int))
    if len(a.calls):
        g |= set(a.calls["goid"].dropna().astype(int))
    return sorted(g)


# ------------------------------------------------------------------------------ the tests


def test_page_is_one_offline_file(go_page):
    text = go_page.read_text()
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"""(src|href)=["']?https?:""", text)
    assert "not drawn" not in text.lower()


@pytest.mark.parametrize("form", ["ns", "ms"])
def test_deep_link_opens_the_requested_window(browser, go_analysis, go_page, form):
    b = go_analysis.blocking
    r = b.loc[b["dur_ns"].idxmax()]
    start, end = int(r["start_ns"]), int(r["end_ns"])
    t0 = capture_start_ns(go_analysis) if form == "ms" else None
    link = deep_link(go_page, start, end, t0_ns=t0, goid=int(r["goid"]))
    assert link.startswith(go_page.as_uri() + "#t=" + ("ns:" if form == "ns" else ""))
    tab = load(browser, go_page, "#" + link.split("#", 1)[1])
    assert tab.range() == (start, end)
    assert tab.eval("document.body.dataset.highlight") == str(int(r["goid"]))
    assert tab.eval(f"document.querySelector('[data-goid=\"{int(r['goid'])}\"]').className").count(
        "tc-on"
    )
    # the record is drawn in that window, in both panes' lanes
    assert tab.drawn()["records"] >= 1
    tab.close()


def test_hash_change_moves_the_view(browser, go_analysis, go_page):
    tab = load(browser, go_page)
    t0 = capture_start_ns(go_analysis)
    tab.redrawn("location.hash = '#t=12.5,13.75'")
    assert tab.range() == (t0 + 12_500_000, t0 + 13_750_000)
    tab.close()


def test_lane_labels_name_every_thread_and_goroutine(browser, go_analysis, go_page):
    tab = load(browser, go_page, height=2000)
    on = go_analysis.slices_on_threads()
    tids = set(on["tid"].astype(int)) | set(go_analysis.blocking["tid"].astype(int))
    labels = tab.eval(
        "[...document.querySelectorAll('.tc-tlane')].map(e => [e.dataset.tid, e.textContent])"
    )
    assert {int(t) for t, _ in labels} == tids
    names = go_analysis.thread_names()
    for t, text in labels:
        assert text.endswith(names[int(t)])
    goids = goroutines_of_interest(go_analysis)
    g_labels = tab.eval(
        "[...document.querySelectorAll('.tc-glane .tc-main')].map(e => e.textContent)"
    )
    al = go_analysis.aligned_slices()
    others = set(al["goid"].dropna().astype(int)) - set(goids)
    assert g_labels == [f"goroutine {g}" for g in goids] + [f"other goroutines ({len(others)})"]
    # the sub-label is where the goroutine was created: a `go` statement of the source the
    # capture's binary was built from, kept in the capture (every worker here was created
    # during the trace)
    source = (ROOT / "sample_traces" / "go_hiredis" / "main.go").read_text()
    go_lines = {i for i, line in enumerate(source.splitlines(), 1) if "go func" in line}
    subs = tab.eval("[...document.querySelectorAll('.tc-glane .tc-sub')].map(e => e.textContent)")
    for sub in subs[: len(goids)]:
        m = re.fullmatch(r"created at main\.\S+ \(main\.go:(\d+)\)", sub.strip())
        assert m and int(m.group(1)) in go_lines, sub
    d = tab.drawn()
    assert d["lanes"] == d["lanesTotal"] == len(tids) + len(goids) + 1
    tab.close()


def windows(a: Analysis, width: int) -> list[tuple[int, int]]:
    """Windows of *width* ns to check: around the longest record, the densest one (most
    slices starting in it), and one at the capture's start."""
    b = a.blocking
    r = b.loc[b["dur_ns"].idxmax()]
    ts = np.sort(a.slices_on_threads()["ref_ts"].to_numpy(np.int64))
    counts = np.searchsorted(ts, ts + width) - np.arange(len(ts))
    dense = int(ts[counts.argmax()])
    t0 = capture_start_ns(a)
    chosen = [
        (int(r["start_ns"]), int(r["start_ns"]) + width),
        (dense, dense + width),
        (t0, t0 + width),
    ]
    # once each: the longest record can start the densest window, and setting the hash the
    # page already shows fires no hashchange, so no redraw would come
    return list(dict.fromkeys(chosen))


@pytest.mark.parametrize("which", ["go", "py", "fresh_go"])
def test_any_10ms_window_shows_every_slice_in_it(browser, which, request):
    a = request.getfixturevalue(f"{which}_analysis")
    html = request.getfixturevalue(f"{which}_page")
    tab = load(browser, html, height=2000)
    for start, end in windows(a, 10 * MS):
        d = tab.redrawn(f"location.hash = '#t=ns:{start},{end}'")
        assert tab.range() == (start, end)
        threads, gor = slices_in(a, start, end)
        assert sum(threads.values()) > 0
        assert d["aggregated"] == 0 and not nonzero(d["binned"]["threads"])
        assert nonzero(d["exact"]["threads"]) == threads
        assert nonzero(d["exact"]["goroutines"]) == gor
        assert d["lanes"] == d["lanesTotal"]
        recs = a.blocking[(a.blocking["start_ns"] <= end) & (a.blocking["end_ns"] >= start)]
        assert d["records"] == len(recs)
    assert not tab.problems(), tab.problems()
    tab.close()


def test_zoomed_out_lanes_fold_slices_into_columns_and_lose_none(browser, py_analysis, py_page):
    """A narrow window makes the dense lanes draw per-pixel-column bars: every slice of the
    window is still counted, either drawn alone or folded into its column."""
    tab = browser.open(py_page.as_uri(), width=520, height=2000)
    d = tab.drawn()
    assert d["aggregated"] > 0 and sum(d["binned"]["threads"].values()) > 0
    start, end = tab.range()
    threads, _ = slices_in(py_analysis, start, end)
    shown = {
        k: d["exact"]["threads"].get(k, 0) + d["binned"]["threads"].get(k, 0)
        for k in set(d["exact"]["threads"]) | set(d["binned"]["threads"])
    }
    assert nonzero(shown) == threads
    assert not tab.problems(), tab.problems()
    tab.close()


def test_findings_panel_lists_the_findings_and_links_their_windows(browser, go_analysis, go_page):
    """The sample was recorded with a shared context and a goroutine leaking replies."""
    assert {f["kind"] for f in go_analysis.findings} >= {"shared-connection", "reply-leak"}
    check_findings_panel(browser, go_analysis, go_page)


@pytest.fixture(scope="module")
def failures_page(tmp_path_factory, redis_server, perf, go_toolchain):
    out = tmp_path_factory.mktemp("failures")
    capture_go(out, GoOptions(goroutines=1, commands=10, slow_every=0, decoy_every=0,
                              poisoned=1, broken=1, redis_port=redis_server.port))  # fmt: skip
    a = analyze([str(out)])
    page = out / "page.html"
    write_html(a, page)
    return a, page


def test_findings_panel_shows_failed_connections(browser, failures_page):
    """A context handed on after a socket timeout and a connection broken under hiredis:
    both kinds in the panel, each with its link to its window on the timeline."""
    a, page = failures_page
    assert {f["kind"] for f in a.findings} == {"poisoned-handoff", "broken-connection"}
    check_findings_panel(browser, a, page)


def check_findings_panel(browser, a, page) -> None:
    """The panel lists the findings as the analysis has them, and each link shows its
    window and highlights its first goroutine."""
    findings = a.findings
    tab = load(browser, page)
    rows = tab.eval(
        "[...document.querySelectorAll('.tc-finding')].map(li => ({"
        "kind: li.querySelector('.tc-fkind').textContent,"
        "sev: li.querySelector('.tc-sev').textContent,"
        "summary: li.querySelector('.tc-fsum').textContent,"
        "href: li.querySelector('a').getAttribute('href')}))"
    )
    assert [(r["kind"], r["sev"], r["summary"]) for r in rows] == [
        (f["kind"], f["severity"], f["summary"]) for f in findings
    ]
    for r, f in zip(rows, findings, strict=True):
        assert r["href"].startswith(f"#t=ns:{f['first_ns']},{f['last_ns']}")
    # following the first finding's link shows its window and its first goroutine
    tab.redrawn("document.querySelector('.tc-finding a').click()")
    assert tab.range() == (findings[0]["first_ns"], findings[0]["last_ns"])
    assert tab.eval("document.body.dataset.highlight") == str(findings[0]["goroutines"][0])
    assert not tab.problems(), tab.problems()
    tab.close()


def test_a_page_without_findings_says_so(browser, py_analysis, py_page):
    assert not py_analysis.findings
    tab = load(browser, py_page)
    assert tab.eval("document.querySelectorAll('.tc-finding').length") == 0
    assert tab.eval("document.querySelector('#tc-findings h3').textContent") == "Findings (0)"
    tab.close()


def test_waker_arrows_and_go_runtime_time(browser, go_analysis, go_page):
    """The sample recorded redis-server beside the workload: its thread gets a lane and an
    arrow to each record it woke, and the hover names it."""
    a = go_analysis
    b = a.blocking
    wakers = [w for w in b["waker"] if w and w["tid"]]
    assert wakers and {w["comm"] for w in wakers} >= {"redis-server"}
    tab = load(browser, go_page, height=2000)
    assert tab.drawn()["wakers"] == len(wakers)
    lanes = set(tab.eval("[...document.querySelectorAll('.tc-tlane')].map(e => +e.dataset.tid)"))
    assert {w["tid"] for w in wakers} <= lanes
    # the Go runtime's records are the page's runtime-shaded ones
    rt = int((b["in"] == "go-runtime").sum())
    assert tab.eval("window.tracecorr.records.rt.reduce((a, b) => a + b, 0)") == rt
    # a woken record's hover names its waker and what the waker waited in meanwhile
    tip = tab.eval(
        "(() => { const R = window.tracecorr.records;"
        "const i = R.waker.findIndex((w, j) => w >= 0 && !R.rt[j]);"
        "window.tracecorr.showRecord(i);"
        "return document.getElementById('tc-tip').textContent; })()"
    )
    assert "woken by redis-server" in tip, tip
    assert re.search(r"meanwhile it waited longest in (clock_nanosleep|epoll_wait)", tip), tip
    assert not tab.problems(), tab.problems()
    tab.close()


def test_clicking_a_goroutine_marks_it_on_every_thread_that_ran_it(browser, go_analysis, go_page):
    a = go_analysis
    b = a.blocking
    r = b.loc[b["dur_ns"].idxmax()]
    g = int(r["goid"])
    start, end = int(r["start_ns"]) - 5 * MS, int(r["start_ns"]) + 5 * MS
    tab = load(browser, go_page, f"#t=ns:{start},{end}", height=2000)
    d = tab.redrawn(f"document.querySelector('.tc-glane[data-goid=\"{g}\"]').click()")
    assert tab.eval("document.body.dataset.highlight") == str(g)
    on = a.slices_on_threads()
    mine = on[(on["goid"] == g) & (on["ref_ts"] <= end) & (on["ref_ts"] + on["dur"] >= start)]
    assert len(mine) and d["highlighted"] == len(mine)
    assert len(set(mine["tid"])) >= 1
    # clicking it again clears the highlight
    d = tab.redrawn(f"document.querySelector('.tc-glane[data-goid=\"{g}\"]').click()")
    assert tab.eval("document.body.dataset.highlight") == "" and d["highlighted"] == 0
    tab.close()


def frames_of(r) -> list[str]:
    """Everything a record names about where it was: call site, call and every stack."""
    out = [r["call_site"], r["call"]]
    for col in ("go_stack", "native_stack", "python_stack"):
        out += list(r[col]) if isinstance(r[col], list) else []
    return [str(x) for x in out if isinstance(x, str)]


@pytest.mark.parametrize("which", ["go", "py"])
def test_icicle_node_filters_the_timeline_to_its_records(browser, which, request):
    a = request.getfixturevalue(f"{which}_analysis")
    html = request.getfixturevalue(f"{which}_page")
    tab = load(browser, html, height=2000)
    b = a.blocking
    tree = tab.eval(
        "(() => { const R = window.tracecorr.records, T = R.tree; return {value: T.value, "
        "count: T.count, label: T.label.map(i => R.strings[i])}; })()"
    )
    # the root is all the blocked time, in every record
    assert tree["value"][0] == int(b["dur_ns"].sum()) and tree["count"][0] == len(b)
    if "in" in b.columns and (b["in"] == "go-runtime").any():
        node = tree["label"].index("Go runtime")
        assert tree["count"][node] == int((b["in"] == "go-runtime").sum())
    # the first node that splits the records, clicked where the page drew it
    node = next(i for i, c in enumerate(tree["count"]) if c < len(b))
    label = tree["label"][node]
    expected = sum(label in frames_of(r) for r in b.to_dict("records"))
    assert 0 < expected < len(b)
    x, y = tab.eval(
        "(() => { const r = document.getElementById('tc-icicle').getBoundingClientRect();"
        f"const b = window.tracecorr.icicleBoxes().find(x => x[0] === {node});"
        "return [r.left + b[1] + Math.min(b[3], 20) / 2, r.top + b[2] + 9]; })()"
    )
    tab.redrawn(
        "document.getElementById('tc-icicle').dispatchEvent(new MouseEvent('click', "
        f"{{clientX: {x}, clientY: {y}, bubbles: true}}))"
    )
    assert tab.eval("document.body.dataset.filter") == str(node)
    d = tab.redrawn("document.getElementById('tc-reset').click()")  # the whole capture
    assert d["records"] == expected
    d = tab.redrawn("document.getElementById('tc-filter-clear').click()")
    assert d["records"] == len(b)
    assert not tab.problems(), tab.problems()
    tab.close()


def test_hostile_names_render_as_text(browser, tmp_path, redis_server, perf, pyspy):
    """A real capture whose thread names carry markup, plus call sites, a Redis key, a
    finding and a waker with markup put into the result: the page shows them as text and
    runs none of it."""
    cap = tmp_path / "cap"
    capture_py(
        cap,
        PyOptions(
            threads=2,
            commands=8,
            slow_every=4,
            slow_ms=60,
            decoy_every=0,
            formats=["chrometrace"],
            name_prefix=HOSTILE + "-",
            redis_port=redis_server.port,
        ),
    )
    a = analyze([str(cap)])
    assert len(a.blocking) and a.blocking["thread"].str.contains("<script>").any()
    a.blocking["call_site"] = HOSTILE_IMG + " (workload.py:1)"
    a.blocking["call"] = "GET user:</div><b>key</b>"
    a.blocking["python_stack"] = [[HOSTILE_IMG, *s] for s in a.blocking["python_stack"]]
    r = a.blocking.iloc[0]
    a.blocking["waker"] = [
        {
            "pid": int(r["pid"]),
            "tid": int(r["tid"]),
            "comm": HOSTILE,
            "wakeup_ns": int(r["end_ns"]),
            "stack": [HOSTILE_IMG],
            "longest_wait": None,
        }
    ] + [None] * (len(a.blocking) - 1)
    a.findings = [
        {
            "kind": HOSTILE,
            "severity": "error",
            "summary": HOSTILE_IMG,
            "pid": int(r["pid"]),
            "fd": 3,
            "goroutines": [],
            "threads": [int(r["tid"])],
            "first_ns": int(r["start_ns"]),
            "last_ns": int(r["end_ns"]),
            "count": 1,
        }
    ]
    for s in a.summary["by_call_site"]:
        s["call_site"] = HOSTILE_IMG
    out = tmp_path / "hostile.html"
    out.write_text(page(a))
    tab = load(browser, out, height=2000)
    assert not tab.eval("document.body.hasAttribute('data-pwned')")  # no payload ran
    assert tab.eval("document.querySelectorAll('img, b').length") == 0  # none became an element
    # the only scripts are the page's own (a trace's "<script" is escaped in the file)
    assert tab.eval("document.scripts.length") == out.read_text().count("<script")
    labels = tab.eval("[...document.querySelectorAll('.tc-tlane')].map(e => e.textContent)")
    assert any("<script>" in t for t in labels)  # shown as text
    assert tab.eval("document.querySelector('.tc-fsum').textContent") == HOSTILE_IMG
    assert tab.eval("document.querySelector('.tc-fkind').textContent") == HOSTILE
    assert "&lt;img src=x onerror=" in tab.eval("document.querySelector('table').outerHTML")
    # the tooltip of a record shows the hostile strings as text too
    tab.eval("window.tracecorr.showRecord(0)")
    tip = tab.eval("document.getElementById('tc-tip').textContent")
    assert "GET user:</div><b>key</b>" in tip and HOSTILE_IMG in tip
    assert tab.eval("document.querySelectorAll('#tc-tip *').length") == tab.eval(
        "document.querySelectorAll('#tc-tip > div').length"
    )
    assert not tab.problems(), tab.problems()
    tab.close()


def test_a_capture_without_records_still_draws(browser, tmp_path):
    """No record reaches a 10 s --min-block: no records, no icicle, every slice still drawn."""
    a = analyze([str(SAMPLES / "go_hiredis")], min_block_ms=10_000)
    assert not len(a.blocking)
    out = tmp_path / "empty.html"
    write_html(a, out)
    tab = load(browser, out, height=2000)
    d = tab.drawn()
    assert d["records"] == 0 and tab.eval("window.tracecorr.records.tree.count[0]") == 0
    start, end = tab.range()
    threads, gor = slices_in(a, start, end)
    assert d["aggregated"] == 0 and nonzero(d["exact"]["threads"]) == threads
    assert nonzero(d["exact"]["goroutines"]) == gor
    tab.close()


def test_dragging_the_time_axis_zooms_to_that_range_and_hover_explains(browser, go_page):
    tab = load(browser, go_page, height=2000)
    tab.eval("document.getElementById('tc-axis').scrollIntoView(); 0")
    left, top, width = tab.eval(
        "(() => { const r = document.getElementById('tc-axis').getBoundingClientRect();"
        "return [r.left, r.top, r.width]; })()"
    )
    s0, e0 = tab.range()
    x0, x1 = 0.25 * width, 0.5 * width
    tab.eval(
        "window.__drawn = false; document.addEventListener('tracecorr:drawn', "
        "() => { window.__drawn = true; }, {once: true}); 0"
    )
    tab.mouse("mousePressed", left + x0, top + 10)
    tab.mouse("mouseMoved", left + x1, top + 10, buttons=1)
    tab.mouse("mouseReleased", left + x1, top + 10)
    tab.wait("window.__drawn")
    s1, e1 = tab.range()
    ns_per_px = (e0 - s0) / width
    assert abs(s1 - (s0 + x0 * ns_per_px)) <= ns_per_px
    assert abs(e1 - (s0 + x1 * ns_per_px)) <= ns_per_px
    # hovering a thread lane's slice explains it, as text
    lane = tab.eval(
        "(() => { const r = document.querySelector('.tc-tlane').getBoundingClientRect();"
        "const c = document.getElementById('tc-lanes').getBoundingClientRect();"
        "return [c.left, r.top, c.width]; })()"
    )
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        tab.mouse("mouseMoved", lane[0] + frac * lane[2], lane[1] + 15)
        if not tab.eval("document.getElementById('tc-tip').hidden"):
            break
    tip = tab.eval("document.getElementById('tc-tip').textContent")
    assert re.search(r"(syscall|goroutine|off-CPU|blocking|redis)", tip), tip
    assert not tab.problems(), tab.problems()
    tab.close()


def test_slices_without_a_clock_offset_are_named(browser, tmp_path):
    """py-spy alone (no perf to match it against, no anchor) cannot be placed on
    CLOCK_MONOTONIC: the page says how many slices of which source are off the axis."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "py_hiredis" / "pyspy.chrometrace.json", src)
    a = analyze([str(src / "pyspy.chrometrace.json")])
    s = a.aligned_slices()
    missing = s.loc[s["ref_ts"].isna(), "source"].astype(str).value_counts()
    assert len(missing)
    out = tmp_path / "u.html"
    write_html(a, out)
    tab = load(browser, out)
    note = tab.eval("document.getElementById('tc-unaligned').textContent")
    for source, count in missing.items():
        assert f"{count} slices of {source}" in note
    assert not tab.eval("document.getElementById('tc-unaligned').hidden")
    tab.close()


@pytest.mark.parametrize("which", ["go", "py"])
def test_first_picture_has_every_slice_in_its_column(which, request):
    """The overview the page paints before it has inflated the slices: per thread-lane row
    and column, a colour wherever a slice lies (and nowhere else), and the busy time of the
    row conserved to the quantisation of the bars."""
    import base64
    import zlib

    from tracecorr.correlator.render.timeline.data import build

    a = request.getfixturevalue(f"{which}_analysis")
    tl = build(a)
    raw = zlib.decompress(base64.b64decode(tl.blobs["tc-overview"]))
    ov = tl.meta["overview"]
    bins, n_tracks = ov["bins"], ov["threads"]
    share = np.frombuffer(raw, np.uint8, n_tracks * bins).reshape(n_tracks, bins)
    worst = np.frombuffer(raw, np.uint8, n_tracks * bins, n_tracks * bins).reshape(n_tracks, bins)

    on = a.slices_on_threads()
    lanes = sorted(
        set(zip(on["pid"], on["tid"], strict=True))
        | set(zip(a.blocking["pid"], a.blocking["tid"], strict=True))
    )
    lane = (
        pd.Series(list(zip(on["pid"], on["tid"], strict=True)))
        .map({k: i for i, k in enumerate(lanes)})
        .to_numpy()
    )
    row = (
        on["kind"]
        .astype(str)
        .map({"go.running": 0, "go.syscall": 0, "py.sample": 0, "os.syscall": 1, "os.offcpu": 2})
        .to_numpy()
    )
    t0 = capture_start_ns(a)
    start = on["ref_ts"].to_numpy(np.int64) - t0
    end = start + on["dur"].to_numpy(np.int64)
    width = tl.meta["end"] / bins
    b0 = np.minimum((start / width).astype(int), bins - 1)
    b1 = np.maximum(b0, np.minimum((end / width).astype(int), bins - 1))
    touched = np.zeros((n_tracks, bins), bool)
    for t, x, y in zip(lane * 3 + row, b0, b1, strict=True):
        touched[t, x : y + 1] = True
    assert ((worst != 255) == touched).all()
    busy = np.bincount(lane * 3 + row, weights=end - start, minlength=n_tracks)
    drawn = share.sum(axis=1) / 255 * width
    assert np.all(np.abs(drawn - busy) <= bins * width / 255 + 1)


def test_deep_link_helper():
    t0 = 1_000_000_000
    assert deep_link("p.html", t0 + 2 * MS, t0 + 3 * MS) == (
        f"p.html#t=ns:{t0 + 2 * MS},{t0 + 3 * MS}"
    )
    assert deep_link("p.html", t0 + 2 * MS, t0 + 3 * MS, t0_ns=t0, goid=7) == (
        "p.html#t=2.000000,3.000000&g=7"
    )
    assert deep_link("p.html", t0 + 2 * MS, t0 + 3 * MS, t0_ns=t0, pad=0.5) == (
        "p.html#t=1.500000,3.500000"
    )
    assert deep_link(Path("/tmp/x y.html"), 5, 9).startswith("file:///tmp/x%20y.html#t=ns:5,9")


def test_notebook_figure_bins_big_captures_without_dropping(py_analysis):
    """Beyond ``exact_up_to`` slices, each (lane row, bin) that any slice touches is one
    segment: the count of such pairs from the slices themselves equals the segments drawn."""
    a = py_analysis
    fig, info = figure(a, bins=400, exact_up_to=1000)
    assert info["mode"] == "binned"
    segments = sum(
        int(np.isfinite(np.asarray(t.x, float)).sum()) // 2
        for t in fig.data
        if t.mode == "lines" and "blocking" not in t.name
    )
    on = a.slices_on_threads()
    x0 = (on["ref_ts"].to_numpy(np.int64) - info["t0_ns"]) / 1e6
    x1 = x0 + on["dur"].to_numpy(np.int64) / 1e6
    lo, hi = x0.min(), x1.max()
    width = (hi - lo) / 400
    b0 = np.clip(((x0 - lo) / width).astype(int), 0, 399)
    b1 = np.clip(((x1 - lo) / width).astype(int), 0, 399)
    row = (
        on["kind"]
        .astype(str)
        .map({"go.running": 0, "go.syscall": 0, "py.sample": 0, "os.syscall": 1, "os.offcpu": 2})
        .to_numpy()
    )
    lane = pd.factorize(pd.Series(list(zip(on["pid"], on["tid"], strict=True))))[0]
    touched = {
        (int(ln), int(r), k)
        for ln, r, a0, a1 in zip(lane, row, b0, b1, strict=True)
        for k in range(a0, a1 + 1)
    }
    assert segments == len(touched)
    fig2, info2 = figure(a)
    assert info2["mode"] == "exact" and len(fig2.data) > 0


def test_text_report_links_the_longest_records_into_the_page(browser, tmp_path):
    """``tracecorr report --html page.html`` prints, for the longest records, links that open
    the page at each of them (with half the record's length of context on either side)."""
    exe = str(Path(sys.executable).parent / "tracecorr")  # the installed command
    r = subprocess.run(
        [exe, "report", str(SAMPLES / "go_hiredis"), "--html", "page.html", "--markdown", "r.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    links = re.findall(r"(page\.html#t=ns:(\d+),(\d+)&g=(\d+))", r.stdout)
    a = analyze([str(SAMPLES / "go_hiredis")])
    longest = a.blocking.sort_values("dur_ns", ascending=False, kind="stable").head(10)
    assert len(links) == len(longest)
    for (_, s, e, g), rec in zip(links, longest.itertuples(), strict=True):
        half = int(round(rec.dur_ns * 0.5))
        assert (int(s), int(e), int(g)) == (rec.start_ns - half, rec.end_ns + half, rec.goid)
    assert "(page.html#t=ns:" in (tmp_path / "r.md").read_text()  # Markdown links too
    link, s, e, g = links[0]
    tab = load(browser, tmp_path / "page.html", "#" + link.split("#", 1)[1])
    assert tab.range() == (int(s), int(e))
    assert tab.eval("document.body.dataset.highlight") == g
    tab.close()
