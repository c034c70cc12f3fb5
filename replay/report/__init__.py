"""``replay report``: one self-contained HTML file and the same plots as PNGs beside it.

:func:`write_report` reads the runs (:mod:`.data`), draws the figures (:mod:`.plots`) and
writes the page (:mod:`.html`). Every file is written under a temporary name and renamed into
place only when all are complete, the HTML last.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replay.errors import OutputPathError

if TYPE_CHECKING:
    from pathlib import Path

    from replay.run.load import RunDir

__all__ = ["Report", "png_paths", "write_report"]


@dataclass(frozen=True)
class Report:
    """What was written."""

    html: Path
    pngs: list[Path]


def png_paths(html_path: Path) -> dict[str, Path]:
    """Where each figure's PNG goes: ``<stem>-<figure>.png`` beside the HTML file."""
    from replay.report.plots import PLOTS

    return {name: html_path.with_name(f"{html_path.stem}-{name}.png") for name, _, _ in PLOTS}


def write_report(runs: list[RunDir], out: Path, *, force: bool = False) -> Report:
    """Write the report of ``runs`` to ``out`` (an .html path) and its PNGs beside it.

    Every file is written under a temporary name and renamed into place once all are complete.

    Parameters
    ----------
    runs : list of RunDir
        The runs to show, in order (:func:`replay.load_run` reads one).
    out : Path
        The HTML file; the PNGs go beside it as ``<stem>-<figure>.png``.
    force : bool, optional
        Replace files that exist.

    Returns
    -------
    Report
        The paths written: the HTML page and the PNGs.

    Raises
    ------
    OutputPathError
        No runs were given, a file exists and ``force`` is not set, or the folder refuses new
        files.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_run, load_scenario, open_trace, run_policies
    >>> from replay import write_report, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> _ = write_runs(run_policies(open_trace("quick.parquet"), ("zap", "cache")), Path("runs"))
    >>> report = write_report([load_run(Path("runs/zap")), load_run(Path("runs/cache"))],
    ...                       Path("report.html"))
    >>> report.html.name, [png.name for png in report.pngs][:2]
    ('report.html', ['report-headline.png', 'report-faults.png'])
    """
    import matplotlib

    matplotlib.use("Agg")  # headless, whatever the user's configuration says

    from replay.atomic import check_output_path
    from replay.report.data import load_series
    from replay.report.html import render
    from replay.report.plots import render_all

    if not runs:
        raise OutputPathError("no runs to report on; give one or more run folders")
    pngs = png_paths(out)
    check_output_path(out, "report")
    if not force:
        for path in (out, *pngs.values()):
            if path.exists():
                raise OutputPathError(
                    f"{path} exists; pass --force to replace it or choose another -o"
                )
    series = [load_series(r) for r in runs]
    figures = render_all(series)
    page = render(series, figures, {k: p.name for k, p in pngs.items()})
    staged: list[tuple[Path, Path]] = []
    try:
        for name, _, png in figures:
            tmp = pngs[name].with_name(f".{pngs[name].name}.{os.getpid()}.partial")
            staged.append((tmp, pngs[name]))
            tmp.write_bytes(png)
        tmp_html = out.with_name(f".{out.name}.{os.getpid()}.partial")
        staged.append((tmp_html, out))
        tmp_html.write_text(page, encoding="utf-8")
        for tmp, final in staged:
            tmp.replace(final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return Report(out, list(pngs.values()))
