"""`replay report` and `replay run --report` as a user runs them: HTML, PNGs, bad input."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from replay.report import png_paths
from replay.report.plots import PLOTS
from tests.integration.test_cli import assert_user_error, replay

SAMPLE = Path(__file__).resolve().parents[2] / "traces" / "samples" / "quick.parquet"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_report(html_path: Path, n_runs: int) -> str:
    """Every plot and table is in the page, nothing is fetched from elsewhere, PNGs are sane."""
    page = html_path.read_text(encoding="utf-8")
    # No external reference of any kind: no scripts, links, imports, or http(s) anywhere.
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert "url(" not in page
    assert not re.search(r"https?://", page)
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    # Every figure, inline and as the PNG beside the page, byte for byte the same.
    pngs = png_paths(html_path)
    for name, caption, _ in PLOTS:
        figure = re.search(
            rf'<figure id="{name}"><img alt="[^"]+" src="data:image/png;base64,([^"]+)">', page
        )
        assert figure is not None, name
        inline = base64.b64decode(figure.group(1))
        on_disk = pngs[name].read_bytes()
        assert inline == on_disk
        width, height = png_size(on_disk)
        assert 800 <= width <= 1400, (name, width)
        assert 200 <= height <= 1600, (name, height)
        assert len(on_disk) > 10_000, name
        assert caption in page
    # The tables: the policy comparison (one column per run) and the runs.
    assert "Policies side by side" in page
    assert "est. stall per freed page" in page
    assert page.count("<table>") == 2
    header = re.search(r"<table><thead><tr>(.*?)</tr>", page)
    assert header is not None
    assert header.group(1).count("<th>") == n_runs + 1
    assert page.count("<li>") == n_runs  # one headline per run
    return page


def test_report_of_three_runs(legacy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = replay("report", str(legacy_runs), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = check_report(out, 3)
    for policy in ("zap", "none", "cache"):
        assert f"runs/{policy}" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["r.html", *(p.name for p in png_paths(out).values())]
    )
    # Replacing needs --force; the files stay as they were without it.
    before = out.read_bytes()
    assert_user_error(replay("report", str(legacy_runs), "-o", str(out)), "--force")
    assert out.read_bytes() == before
    proc = replay("report", str(legacy_runs), "-o", str(out), "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert len(doc["runs"]) == 3
    assert len(doc["pngs"]) == len(PLOTS)


def test_report_of_one_run(legacy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    proc = replay("report", str(legacy_runs / "none"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    page = check_report(out, 1)
    assert "the shrinker freed nothing" in page


def test_run_with_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = replay("run", str(SAMPLE), "-o", str(runs), "--report")
    assert proc.returncode == 0, proc.stderr
    check_report(runs / "report.html", 3)
    assert f"wrote {runs / 'report.html'}" in proc.stderr


def test_report_bad_input(legacy_runs: Path, tmp_path: Path) -> None:
    assert_user_error(replay("report", str(tmp_path), "-o", str(tmp_path / "r.html")), "not a run")
    assert_user_error(
        replay("report", str(legacy_runs / "zap"), "-o", str(tmp_path / "r.txt")), ".html"
    )
    assert_user_error(
        replay("report", str(legacy_runs / "zap"), "-o", str(tmp_path / "no" / "r.html")),
        "does not exist",
    )
    broken = tmp_path / "broken"
    shutil.copytree(legacy_runs / "zap", broken)
    (broken / "timeline.parquet").unlink()
    assert_user_error(
        replay("report", str(broken), "-o", str(tmp_path / "r.html")), "timeline.parquet"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)
"""How the machines start Chromium headless as root, with no network (see .ci/run)."""

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map((im) => {
    const r = im.getBoundingClientRect();
    return {alt: im.alt, complete: im.complete, natural: [im.naturalWidth, im.naturalHeight],
            box: [r.left + scrollX, r.top + scrollY, r.width, r.height]};
  });
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({images, height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""
"""Added to a copy of the report only (the report itself has no script): where each image is
and whether the browser decoded it."""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _browser_layout(page: Path, tmp_path: Path) -> dict[str, Any]:
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the page never finished loading in the browser"
    layout: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return layout


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
def test_report_renders_in_a_headless_browser(legacy_runs: Path, tmp_path: Path) -> None:
    """Every plot of the report decodes in a real browser and shows something where it sits.

    A copy of the page with a probe script gives each image's place and decoded size; a
    screenshot of the real page, as tall as the page, is then cut at those places: a broken or
    blank image has (next to) one colour there, a plot has axes, text and data.
    """
    import matplotlib.image as mpimg
    import numpy as np

    out = tmp_path / "r.html"
    assert replay("report", str(legacy_runs), "-o", str(out)).returncode == 0
    layout = _browser_layout(out, tmp_path)
    images = layout["images"]
    assert len(images) == len(PLOTS), images
    for image in images:
        assert image["complete"], f"broken image: {image}"
        assert min(image["natural"]) > 0, f"broken image: {image}"
    width, height = 1200, int(layout["height"])
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", f"--window-size={width},{height}", out.as_uri())
    assert png_size(shot.read_bytes()) == (width, height)
    pixels = np.asarray(mpimg.imread(shot))[..., :3]
    for image in images:
        x, y, w, h = (round(v) for v in image["box"])
        assert min(w, h) > 100, f"{image['alt']} drawn at {w} x {h} pixels"
        region = pixels[y : y + h, x : min(x + w, width)]
        inked = (np.abs(region - 1.0).max(axis=-1) > 0.1).mean()  # not white
        colours = len(np.unique((region * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        assert inked > 0.01, f"{image['alt']}: blank where it sits ({inked:.2%} inked)"
        assert colours > 20, f"{image['alt']}: {colours} colours, not a plot"
