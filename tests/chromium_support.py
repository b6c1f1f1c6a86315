"""A page as a person sees it, for the tests of pgtrade's HTML pages (the backtest report, the dashboard): headless
Chromium (Debian's ``chromium``, scripts/install-system.sh) opens the page without a network, and ``rendered`` says
per chart what is wrong with it: no plotly SVG or no drawn trace in the chart's container (the DOM after rendering),
or too few colored pixels inside the container's box on a screenshot. An empty list per chart: it rendered."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1200
MIN_COLORED = 400  # pixels of a saturated color (lines, markers, bars, heatmap cells) each chart must show at least
# after rendering, write each chart container's box into the DOM (the pages themselves carry no such script)
PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const boxes = {};
  for (const id of %s) {
    const el = document.getElementById(id);
    if (el) { const r = el.getBoundingClientRect(); boxes[id] = [r.left, r.top + window.scrollY, r.width, r.height]; }
  }
  document.body.setAttribute('data-boxes', JSON.stringify(boxes));
  document.body.setAttribute('data-height', String(document.documentElement.scrollHeight));
}, 300));
</script>"""


def chromium(tmp: Path, url: str, *args: str, height: int, budget_ms: int = 15000) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with ``args`` (e.g. ``--dump-dom``, ``--screenshot=FILE``)."""
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium (scripts/install-system.sh)"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # the tests may run as root (containers, CI)
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={WIDTH},{height}",
        f"--virtual-time-budget={budget_ms}",  # let the inline scripts run and plotly draw before the dump / shot
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def colored(px: tuple[int, ...]) -> bool:
    r, g, b = px[:3]
    return max(r, g, b) - min(r, g, b) > 80  # plotly's trace colors; not white, grey text or the pale plot area


def rendered(
    page: Path, tmp: Path, chart_ids: tuple[str, ...] | list[str], *, min_colored: int = MIN_COLORED
) -> dict[str, list[str]]:
    """Open ``page`` in headless Chromium; per chart id, what is wrong with it (an empty list: it rendered).
    ``min_colored``: the colored pixels a chart must show inside its box at least."""
    probe = tmp / f"probe-{page.name}"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", PROBE % json.dumps(list(chart_ids)) + "</body>"), encoding="utf-8")
    dom = chromium(tmp, probe.as_uri(), "--dump-dom", height=1000).stdout
    boxes = json.loads(re.search(r'data-boxes="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    shot = tmp / f"{page.stem}.png"
    chromium(tmp, probe.as_uri(), f"--screenshot={shot}", height=height)
    img = Image.open(shot).convert("RGB")
    problems: dict[str, list[str]] = {}
    starts = sorted((dom.find(f'id="{cid}"'), cid) for cid in chart_ids)
    for i, (at, cid) in enumerate(starts):
        wrong: list[str] = []
        part = dom[at : starts[i + 1][0]] if i + 1 < len(starts) else dom[at:]
        if at < 0 or 'class="main-svg"' not in part:
            wrong.append("no plotly svg")
        elif not re.search(r'class="(js-line|point|hm|bars)"|<image ', part):
            wrong.append("no trace drawn")
        x, y, w, h = (int(v) for v in boxes.get(cid, [0, 0, 0, 0]))
        if w <= 0 or h <= 0:
            wrong.append("empty box")
        else:
            crop = img.crop((x, y, min(x + w, img.width), min(y + h, img.height)))
            n = sum(1 for px in crop.get_flattened_data() if colored(px))
            if n < min_colored:
                wrong.append(f"{n} colored pixels")
        problems[cid] = wrong
    return problems


class Browser:
    """Headless Chromium driven over the DevTools protocol (its websocket; ``websockets``' sync client), for pages
    that change while open: navigate once, then evaluate JavaScript in the page as often as needed. A context
    manager: ``with Browser(tmp) as browser: ...`` stops Chromium at the end."""

    def __init__(self, tmp: Path, *, height: int = 1000) -> None:
        import websockets.sync.client

        from pgtrade.cluster import free_port

        assert CHROMIUM, "headless Chromium is needed: apt-get install chromium (scripts/install-system.sh)"
        port = free_port()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp / 'cdp-profile'}", f"--window-size={WIDTH},{height}",
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "Chromium's DevTools did not come up"
            time.sleep(0.2)
        self._stack = contextlib.ExitStack()
        self._stack.callback(self._stop)
        url = pages[0]["webSocketDebuggerUrl"]
        self.ws = self._stack.enter_context(websockets.sync.client.connect(url, max_size=None, open_timeout=30))
        self._id = 0

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                return msg["result"]

    def evaluate(self, expression: str):
        """The value of ``expression`` in the page (JSON-serializable values)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        """Poll ``expression`` in the page until it is truthy (bounded); its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)

    def _stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
