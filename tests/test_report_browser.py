"""The HTML report opened in headless Chromium: every embedded figure decodes and displays, and the
scorecard of the paper's claims is the first thing on the page.

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


def _chromium(tmp_path: Path, page: Path) -> list[str]:
    """Headless Chromium printing the DOM of ``page`` once it (and its virtual time budget) settles."""
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
            "--dump-dom", page.as_uri()]


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
    completed = subprocess.run(_chromium(tmp_path, page), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    body = re.search(r"<body[^>]*>", completed.stdout)
    assert body, completed.stdout[:500]
    assert f'data-images="{figure_count}"' in body.group(0)
    assert f'data-images-loaded="{figure_count}"' in body.group(0)
    assert figure_count == 5


SCORECARD_PROBE = """<script>
window.addEventListener("load", function () {
  var body = document.body, table = document.getElementById("scorecard");
  body.setAttribute("data-scorecard", table ? "found" : "missing");
  if (!table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var box = table.getBoundingClientRect();
  body.setAttribute("data-scorecard-first-table", document.querySelector("table") === table ? "yes" : "no");
  body.setAttribute("data-scorecard-heading", document.querySelector("h2").textContent);
  body.setAttribute("data-scorecard-visible", box.width > 0 && box.height > 0 ? "yes" : "no");
  body.setAttribute("data-scorecard-verdicts", rows.map(function (row) {
    return row.className + "=" + row.cells[2].textContent; }).join("|"));
  body.setAttribute("data-scorecard-numbers", rows[0].cells[5].textContent);
});
</script>
"""


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (Debian package chromium)")
def test_scorecard_atop_the_html_report_in_chromium(tmp_path: Path) -> None:
    """The scorecard is the first table of the page, under the first heading, visible, one row per claim
    with its verdict (tests/fixtures/results/claims/holds: four claims supported, Figure 7 not decided)."""
    out = build_report(FIXTURE.parent / "claims" / "holds", tmp_path / "report")
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    page.write_text((out / "report.html").read_text().replace("</body>", SCORECARD_PROBE + "</body>"))
    completed = subprocess.run(_chromium(tmp_path, page), capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    body = re.search(r"<body[^>]*>", completed.stdout)
    assert body, completed.stdout[:500]
    attributes = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(0)))
    assert attributes["data-scorecard"] == "found"
    assert attributes["data-scorecard-first-table"] == "yes"
    assert attributes["data-scorecard-heading"] == "Scorecard: the paper's claims on these results"
    assert attributes["data-scorecard-visible"] == "yes"
    assert attributes["data-scorecard-verdicts"] == (
        "supported=supported|supported=supported|supported=supported|supported=supported|not-decided=not decided")
    assert attributes["data-scorecard-numbers"] == (
        "plain20 → plain56: 11.00 → 15.00 (n=3/3), Δ +4.00, 95% CI [+1.73, +6.27], 3/3 seed pairs agree")
