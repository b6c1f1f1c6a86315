"""A page as a person sees it, for the tests of pgtrade's HTML pages (the backtest report, the dashboard): headless
Chromium (Debian's ``chromium``, scripts/install-system.sh) opens the page without a network, and ``rendered`` says
per chart what is wrong with it: no plotly SVG or no drawn trace in the chart's container (the DOM after rendering),
or too few colored pixels inside the container's box on a screenshot. An empty list per chart: it rendered."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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
