"""``replay synth --as damon`` read back by ``replay convert``, in every form it writes.

One synthetic host (``quick``): the faults a ``none`` host logs (``--as ftrace --faults-under
none``) and the DAMON record of its accesses in each layout and as a damo record, converted
together with the VM config the rendering writes (``hva_start``, ``damon_target``). Every form
must give the same region rows (time stamps aside: damo keeps one per snapshot), one per
``damon_aggregated`` line of the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import pytest

from replay.convert import ConvertOptions, convert_logs

if TYPE_CHECKING:
    from pathlib import Path

FORMATS = ("ftrace", "perf", "trace-cmd", "json", "json_compressed")


def _synth(folder: Path, *args: str) -> None:
    from typer.testing import CliRunner

    from replay.cli import app

    result = CliRunner().invoke(app, ["synth", "quick", *args[:-1], str(folder / args[-1])])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("damon-synth")
    _synth(folder, "--as", "ftrace", "--faults-under", "none", "-o", "kvm.txt")
    for fmt in FORMATS:
        _synth(folder, "--as", "damon", "--damon-format", fmt, "-o", f"damon-{fmt}.out")
    return folder


def _regions(folder: Path, fmt: str) -> tuple[dict[str, object], pl.DataFrame]:
    out = folder / f"{fmt}.parquet"
    text = fmt not in ("json", "json_compressed")
    report = convert_logs(
        [str(folder / "kvm.txt"), str(folder / f"damon-{fmt}.out")],
        out,
        ConvertOptions(
            vm_config=folder / f"damon-{fmt}.out.vms.toml",
            damon_intervals=(5000, 100_000) if text else None,
        ),
    )
    trace = pl.read_parquet(out).with_columns(pl.col(pl.Categorical).cast(pl.String))
    return report.to_json(), trace.filter(pl.col("event") == "region")


def test_every_form_gives_the_same_regions(rendered: Path) -> None:
    first: pl.DataFrame | None = None
    for fmt in FORMATS:
        doc, regions = _regions(rendered, fmt)
        assert doc["coverage"] == "faults+sampled"
        damon = doc["damon"]
        assert isinstance(damon, dict)
        assert damon["bytes_outside_memslots"] == 0
        assert damon["intervals_source"] == ("option" if fmt in FORMATS[:3] else "record")
        if fmt in FORMATS[:3]:
            lines = (rendered / f"damon-{fmt}.out").read_text().count("damon_aggregated:")
            events = doc["events"]
            assert isinstance(events, dict)
            assert events["damon_aggregated"] == regions.height == lines > 0
        values = regions.drop("t_ns")
        if first is None:
            first = values
        else:
            assert values.equals(first), fmt


def test_faults_of_the_none_host_are_kept(rendered: Path) -> None:
    doc, _ = _regions(rendered, "ftrace")
    rows = doc["rows"]
    assert isinstance(rows, dict)
    assert rows["access"] == (rendered / "kvm.txt").read_text().count("kvm_page_fault:")
