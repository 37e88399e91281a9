"""Headless Chromium for report tests (Debian's `chromium`; .ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def body_attributes_in_chromium(report, tmp_path) -> dict[str, str]:
    """Load a report in headless Chromium; return the data-* attributes its status script set."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body, out.stderr[-2000:]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(0)))


def rendered_dom(report, tmp_path) -> str:
    """The report's DOM after headless Chromium drew it (plotly's SVG, tick labels included)."""
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=30000", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    return out.stdout


def section_ticks(dom: str, heading: str, axis_class: str) -> list[str]:
    """Tick labels of one axis class (e.g. "y2tick", "xtick") in the report section titled `heading`."""
    for section in dom.split("<section>")[1:]:
        if f"<h2>{heading}</h2>" in section:
            return re.findall(rf'class="{axis_class}"[^>]*>(?:<[^>]*>)*?<text[^>]*>([^<]*)</text>', section)
    raise AssertionError(f"no section {heading!r}")
