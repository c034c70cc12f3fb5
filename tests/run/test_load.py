"""A run folder is checked when it is loaded (issue 12 item 9): summary shape, stamps, columns."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.run import load_run, run_policies, write_runs
from replay.run.load import RunFormatError
from replay.run.schema import RUN_KEY
from replay.run.shape import ShapeError, check_summary
from replay.synth import generate, load_scenario
from replay.trace import open_trace

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("load")
    trace = tmp / "t.parquet"
    generate(load_scenario("quick", accesses=5_000), trace)
    write_runs(run_policies(open_trace(trace), ("zap", "cache")), tmp / "runs")
    return tmp / "runs"


@pytest.fixture
def run(runs: Path, tmp_path: Path) -> Path:
    shutil.copytree(runs / "zap", tmp_path / "zap")
    return tmp_path / "zap"


def _rewrite(path: Path, change: Callable[[pa.Table, dict[bytes, bytes]], pa.Table]) -> None:
    """Rewrite a run file: ``change`` gets its table and footer (which it may edit)."""
    footer = dict(pq.ParquetFile(path).metadata.metadata)
    footer.pop(b"ARROW:schema", None)
    table = change(pq.read_table(path), footer)
    pq.write_table(table.replace_schema_metadata(footer), path)


def _summary(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = run / "summary.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_a_run_as_written_passes(runs: Path) -> None:
    for policy in ("zap", "cache"):
        check_summary(json.loads((runs / policy / "summary.json").read_text()))
        assert load_run(runs / policy).checked == {
            "faults.parquet",
            "scans.parquet",
            "timeline.parquet",
            "vcpu_cache.parquet",
        }


def test_a_file_stamped_with_another_policy(run: Path, runs: Path) -> None:
    shutil.copyfile(runs / "cache" / "scans.parquet", run / "scans.parquet")
    with pytest.raises(RunFormatError, match=r"scans\.parquet is not a file of this run.*policy"):
        load_run(run)


def test_a_column_of_another_type(run: Path) -> None:
    def retype(table: pa.Table, _: dict[bytes, bytes]) -> pa.Table:
        i = table.schema.get_field_index("faults")
        return table.set_column(i, "faults", table.column("faults").cast(pa.string()))

    _rewrite(run / "timeline.parquet", retype)
    with pytest.raises(RunFormatError, match=r"timeline\.parquet: column faults is string"):
        load_run(run)


def test_a_missing_column(run: Path) -> None:
    _rewrite(run / "faults.parquet", lambda t, _: t.drop_columns(["gfn"]))
    with pytest.raises(RunFormatError, match=r"faults\.parquet has no column gfn"):
        load_run(run)


def test_a_damaged_stamp(run: Path) -> None:
    def damage(table: pa.Table, footer: dict[bytes, bytes]) -> pa.Table:
        footer[RUN_KEY.encode()] = b"[1, 2"
        return table

    _rewrite(run / "vcpu_cache.parquet", damage)
    with pytest.raises(RunFormatError, match=r"vcpu_cache\.parquet: its replay\.run stamp"):
        load_run(run)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d["per_vcpu"].update({"x": {}}), "per_vcpu has a key 'x'"),
        (lambda d: d["totals"]["faults_by_cause"].pop("mmio"), "totals.faults_by_cause lacks mmio"),
        (lambda d: d["config"].update(bucket_ns=0), "config.bucket_ns must be a whole number >= 1"),
        (lambda d: d["trace"].update(likely_reasons=[1]), "trace.likely_reasons must be a list"),
        (lambda d: d.update(policy="all"), "policy must be one of zap, none, cache"),
        (lambda d: d["per_vm"]["0"].update(name=None), "per_vm.0.name must be a string"),
    ],
)
def test_a_summary_of_the_wrong_shape(
    run: Path, edit: Callable[[dict[str, Any]], None], named: str
) -> None:
    _summary(run, edit)
    with pytest.raises(RunFormatError, match="summary.json: " + named.replace(".", r"\.")):
        load_run(run)


def test_an_older_v1_run_without_the_fidelity_figures_loads(run: Path, tmp_path: Path) -> None:
    """Runs written before the additive change: no faults_unexplained column, no new keys."""
    from replay.report import write_report

    _rewrite(run / "timeline.parquet", lambda t, _: t.drop_columns(["faults_unexplained"]))
    loaded = load_run(run)
    assert "faults_unexplained" not in loaded.table("timeline.parquet").column_names
    assert write_report([loaded], tmp_path / "r.html").html.is_file()


def test_the_walker_names_the_first_bad_key() -> None:
    with pytest.raises(ShapeError, match=r"^totals must be a JSON object, not a list$"):
        check_summary(
            {
                "schema_version": 1,
                "policy": "zap",
                "engine": "fast",
                "wall_s": 0.5,
                "trace": {
                    "path": "t",
                    "fingerprint": "f",
                    "coverage": "all-accesses",
                    "rows": 1,
                    "t_first_ns": None,
                    "t_last_ns": None,
                },
                "config": {"mmu": {}, "costs": {}, "bucket_ns": 1},
                "caveats": [],
                "totals": [],
            }
        )
