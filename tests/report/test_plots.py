"""The report's figures show what the runs hold, also when it is little or sparse."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pytest

from replay import open_trace, run_policies, write_runs
from replay.report.data import expand, load_series
from replay.report.plots import faults_over_time, freed_vs_stall, render_all
from tests.builders import access, reclaim, write_rows

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure


@pytest.fixture(scope="module")
def sparse_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reclaim pass at the start, then 258 faults in one bucket 286 s later (issue 12 item 20:
    a real capture's shape, where the reclaim log came first)."""
    root = tmp_path_factory.mktemp("sparse")
    rows = [reclaim(1_000, "kswapd", 12)]
    rows += [access(286_000_000_000 + i * 1_000, gpa=i << 12) for i in range(258)]
    trace = write_rows(root / "sparse.parquet", rows)
    runs = root / "m$\\bad$"  # the runs' labels name this folder; "$...$" is mathtext
    write_runs(run_policies(open_trace(trace), ("zap", "none", "cache")), runs)
    return runs


def _pixels(fig: Figure) -> np.ndarray:
    import matplotlib.image as mpimg

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return np.asarray(mpimg.imread(buf, format="png"))[..., :3]


def _has_colour(pixels: np.ndarray, hex_colour: str) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels - rgb).max(axis=-1) < 0.02).sum())


def test_faults_in_one_narrow_bucket_are_visible(sparse_runs: Path) -> None:
    """258 faults in one 0.2 s bucket of a 286 s span: the area plot is a fraction of a pixel
    wide, so each non-empty bucket gets a mark in its attribution's colour ("neither" grey), and
    the panel title says why."""
    series = [load_series(r) for r in expand([sparse_runs])]
    fig = faults_over_time(series)
    grey = _has_colour(_pixels(fig), "#9e9e9e")
    legend_swatches = 400  # the legend's grey patch alone is about 20 x 10 pixels
    assert grey > legend_swatches, f"only {grey} grey pixels: the faults are not drawn visibly"
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert all("each marked" in title for title in titles[:3]), titles


def test_a_headline_with_nothing_freed_says_so_in_words(sparse_runs: Path) -> None:
    series = [load_series(r) for r in expand([sparse_runs])]
    fig = freed_vs_stall(series)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("nothing freed") == 3
    assert texts.count("no stall") == 3
    assert not any("0.0 MiB" in t for t in texts)


def test_names_with_dollar_signs_are_drawn_as_text(sparse_runs: Path) -> None:
    """Issue 12 item 12: a folder named ``m$\\bad$`` crashed matplotlib's mathtext parser."""
    series = [load_series(r) for r in expand([sparse_runs])]
    pngs = render_all(series)
    assert [name for name, _, _ in pngs] == ["headline", "faults", "scans", "cache", "cost-cdf"]
    assert all(png.startswith(b"\x89PNG") for _, _, png in pngs)
