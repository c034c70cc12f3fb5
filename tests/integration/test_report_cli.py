"""`replay report` and `replay run --report` as a user runs them: HTML, PNGs, bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

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


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_a_headless_browser(legacy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert replay("report", str(legacy_runs), "-o", str(out)).returncode == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1200, 3000)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
