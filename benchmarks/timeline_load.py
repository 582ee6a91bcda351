"""HTML timeline size and first paint in Chromium, on the large perf benchmark capture.

Uses the capture made by benchmarks/perf_parse.py (the Go hiredis workload under perf, with its
Go trace), writes `tracecorr report --html`, injects a first-paint probe into a copy (the
product page carries no benchmark code), loads it headless and reads the time the probe
records (performance.now() when plotly has drawn). Goal (issue 7): first paint <= 3 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import BENCH_DIR, mib  # noqa: E402
from benchmarks.perf_parse import make_capture  # noqa: E402

#: records performance.now() once plotly has drawn: <body data-first-paint-ms="...">
FIRST_PAINT_PROBE = """<script>
(function () {
  var gd = document.querySelector('#timeline .plotly-graph-div');
  function painted() {
    if (!document.body.dataset.firstPaintMs) {
      document.body.dataset.firstPaintMs = performance.now().toFixed(0);
    }
  }
  if (!gd) return;
  if (gd._fullLayout) { painted(); }  // newPlot already ran (it is synchronous for gl2d)
  else if (gd.on) { gd.on('plotly_afterplot', painted); }
})();
</script>
"""


def with_probe(page: Path, out: Path) -> Path:
    """A copy of *page* with the first-paint probe before </body>."""
    text = page.read_text(encoding="utf-8")
    i = text.rindex("</body>")
    out.write_text(text[:i] + FIRST_PAINT_PROBE + text[i:], encoding="utf-8")
    return out


def main() -> int:
    cap = make_capture(8, 10_000)
    html = BENCH_DIR / "timeline.html"
    from tracecorr.correlator.api import analyze
    from tracecorr.correlator.render.html import write_html

    t = time.perf_counter()
    a = analyze([str(cap / "go.trace"), str(cap / "perf.script.txt")])
    t_an = time.perf_counter() - t
    t = time.perf_counter()
    write_html(a, html)
    t_html = time.perf_counter() - t
    chrome = shutil.which("chromium")
    if chrome is None:
        print("chromium not installed (apt-get install chromium)")
        return 1
    with tempfile.TemporaryDirectory() as prof:
        t = time.perf_counter()
        dom = subprocess.run(
            [
                chrome,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={prof}",
                "--virtual-time-budget=60000",
                "--dump-dom",
                with_probe(html, BENCH_DIR / "timeline.probe.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        wall = time.perf_counter() - t
    m = re.search(r'data-first-paint-ms="(\d+)"', dom)
    hidden = re.search(r"Not drawn: ([\d,]+) slices shorter than ([\d.]+) µs", dom)
    print(f"capture: {cap} ({len(a.blocking)} blocking records)")
    print(f"analyze {t_an:.1f} s, write html {t_html:.1f} s, html size {mib(html.stat().st_size)}")
    if hidden:
        print(f"aggregated: {hidden.group(1)} slices shorter than {hidden.group(2)} us not drawn")
    print(
        f"chromium: first paint {int(m.group(1)) / 1000:.2f} s (goal <= 3 s); "
        f"whole headless run incl. browser start {wall:.1f} s"
        if m
        else "chromium: no first paint recorded"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
