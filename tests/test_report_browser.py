"""The HTML report opened in headless Chromium: every embedded figure decodes and displays.

A tiny script, added to a copy of the report, marks <body> once every <img> is complete with a
non-zero natural width; Chromium's --dump-dom prints the DOM after the page (and its virtual time
budget) settles. Debian package: chromium (`make system-deps`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.report import build_report

CHROMIUM = Path("/usr/bin/chromium")
FIXTURE = Path(__file__).parent / "fixtures" / "results" / "cifar_mini"

PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-loaded", loaded.length);
});
</script>
"""


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian package chromium)")
def test_html_figures_load_in_chromium(tmp_path: Path) -> None:
    out = build_report(FIXTURE, tmp_path / "report")
    figure_count = len(list((out / "figures").glob("*.png")))
    # Only the HTML travels: if it leaned on figures/ or the network, images would fail to load.
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    page.write_text((out / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    shutil.rmtree(out / "figures")
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
               "--dump-dom", page.as_uri()]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    body = re.search(r"<body[^>]*>", completed.stdout)
    assert body, completed.stdout[:500]
    assert f'data-images="{figure_count}"' in body.group(0)
    assert f'data-images-loaded="{figure_count}"' in body.group(0)
    assert figure_count == 5
