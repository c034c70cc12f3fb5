"""``replay diff`` as a library: metric rows, fault accounting against an independent count."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from replay._schemas import load_schema
from replay.diff import DifferentTracesError, diff_runs
from replay.diff.faults import write_fault_diff
from replay.diff.metrics import Row, direction, parse_threshold
from replay.diff.render import markdown, verdict
from replay.errors import ReplayError
from replay.mmu.results import FAULT_COLUMNS
from replay.run.load import RunFormatError, load_run

if TYPE_CHECKING:
    from pathlib import Path


COLUMNS = tuple(c for c in FAULT_COLUMNS if c != "row")


def _faults(run: Path) -> dict[int, tuple[object, ...]]:
    """Fault rows by trace row, read plainly with pyarrow (the oracle the diff is checked on).

    Position 6 of each tuple is the attribution; every column but ``row`` is compared.
    """
    t = pq.read_table(run / "faults.parquet").to_pydict()
    return {r: tuple(t[c][i] for c in COLUMNS) for i, r in enumerate(t["row"])}


def test_a_run_against_itself_changes_nothing(legacy_runs: Path) -> None:
    zap = load_run(legacy_runs / "zap")
    d = diff_runs(zap, zap)
    assert all(r.status == "same" for r in d.rows)
    assert d.faults is not None
    assert d.faults.counts == dict.fromkeys(d.faults.counts, 0)
    assert d.faults.same == zap.summary["totals"]["faults"]
    assert d.faults.frame.height == 0
    assert "(same)" in verdict(d)


@pytest.mark.parametrize(("a", "b"), [("none", "zap"), ("zap", "none")])
def test_zap_against_none_leads_with_zapped_page_tables(legacy_runs: Path, a: str, b: str) -> None:
    """The verdict and the fault accounting come first, led by the zapped page tables.

    In the metrics table regressions come first: with zap as B, the zapped faults are the
    largest regression; with none as B they are the largest improvement (none's regressions,
    such as a higher peak of page-table pages, are listed before them).
    """
    d = diff_runs(load_run(legacy_runs / a), load_run(legacy_runs / b))
    wanted = "regression" if b == "zap" else "improvement"
    first = next(r for r in d.rows if r.scope == "total" and r.status == wanted)
    assert first.metric == "faults_by_attribution.zapped_page_tables"
    if b == "zap":
        assert d.rows[0] is first
    assert verdict(d).startswith("faults ")
    assert verdict(d).split(": ", 1)[1].startswith("zapped page tables")
    assert d.faults is not None
    # Every fault only zap took was attributed to zapped page tables, and is the whole change.
    (transition,) = d.faults.transitions
    zapped = load_run(legacy_runs / "zap").summary["totals"]["faults_by_attribution"]
    assert transition["faults"] == zapped["zapped_page_tables"] > 0
    assert {transition["a"], transition["b"]} == {"zapped_page_tables", "(no fault)"}


@pytest.mark.parametrize(("a", "b"), [("zap", "cache"), ("cache", "none"), ("zap", "none")])
def test_fault_accounting_matches_an_independent_count(legacy_runs: Path, a: str, b: str) -> None:
    fa, fb = _faults(legacy_runs / a), _faults(legacy_runs / b)
    d = diff_runs(load_run(legacy_runs / a), load_run(legacy_runs / b))
    assert d.faults is not None
    common = fa.keys() & fb.keys()
    expected = {
        "only_a": len(fa.keys() - fb.keys()),
        "only_b": len(fb.keys() - fa.keys()),
        "attribution_changed": sum(fa[k][6] != fb[k][6] for k in common),
        "detail_changed": sum(fa[k][6] == fb[k][6] and fa[k] != fb[k] for k in common),
    }
    assert d.faults.counts == expected
    assert (
        d.faults.same == len(common) - expected["attribution_changed"] - expected["detail_changed"]
    )
    # The transitions account for every fault whose presence or attribution changed.
    want = Counter(
        [(fa[k][6], "(no fault)") for k in fa.keys() - fb.keys()]
        + [("(no fault)", fb[k][6]) for k in fb.keys() - fa.keys()]
        + [(fa[k][6], fb[k][6]) for k in common if fa[k][6] != fb[k][6]]
    )
    assert {(t["a"], t["b"]): t["faults"] for t in d.faults.transitions} == dict(want)


def test_fault_level_output_file(legacy_runs: Path, tmp_path: Path) -> None:
    a, b = load_run(legacy_runs / "zap"), load_run(legacy_runs / "cache")
    d = diff_runs(a, b)
    assert d.faults is not None
    out = tmp_path / "changed.parquet"
    write_fault_diff(d.faults, out, a, b)
    table = pq.read_table(out)
    assert table.num_rows == sum(d.faults.counts.values())
    rows = table.to_pydict()
    assert Counter(rows["change"]) == +Counter(d.faults.counts)
    for i, change in enumerate(rows["change"]):
        if change == "only_a":
            assert rows["row_b"][i] is None
            assert rows["attribution_a"][i] is not None
        elif change == "attribution_changed":
            assert rows["attribution_a"][i] != rows["attribution_b"][i]
    order = [
        ra if ra is not None else rb for ra, rb in zip(rows["row_a"], rows["row_b"], strict=True)
    ]
    assert order == sorted(order)
    schema = load_schema("diff.v1")
    assert table.column_names == [c["name"] for c in schema["columns"]]
    assert (
        str(table.schema.field("cause_a").type)
        == "dictionary<values=string, indices=int8, ordered=0>"
    )
    stamp = json.loads(pq.read_metadata(out).metadata[schema["metadata_key"].encode()])
    assert stamp["a"]["policy"] == "zap"
    assert stamp["b"]["policy"] == "cache"
    assert [p.name for p in tmp_path.iterdir()] == ["changed.parquet"]


def test_runs_of_different_traces_need_force(legacy_runs: Path, other_trace_run: Path) -> None:
    a, b = load_run(legacy_runs / "zap"), load_run(other_trace_run)
    with pytest.raises(DifferentTracesError, match="--force"):
        diff_runs(a, b)
    d = diff_runs(a, b, force=True)
    assert not d.same_trace
    assert d.faults is not None
    assert d.faults.keyed_on == "key"
    fa, fb = _faults(legacy_runs / "zap"), _faults(other_trace_run)
    ka = Counter(v[:4] for v in fa.values())
    kb = Counter(v[:4] for v in fb.values())
    assert d.faults.counts["only_a"] == sum((ka - kb).values())
    assert d.faults.counts["only_b"] == sum((kb - ka).values())
    assert "DIFFERENT traces" in markdown(d)


def test_rows_and_directions() -> None:
    assert direction("faults") == -1
    assert direction("faults_by_attribution.zapped_page_tables") == -1
    assert direction("faults_by_attribution.none") == 0
    assert direction("stall_per_freed_page") == -1
    assert direction("hits") == 1
    assert direction("pages_freed") == 0
    assert direction("reclaim_passes_by_source.kswapd") == 0
    assert Row("total", "faults", 10, 15, 0).status == "regression"
    assert Row("total", "hits", 10, 15, 0).status == "improvement"
    assert Row("total", "scan_calls", 10, 15, 0).status == "changed"
    assert Row("total", "stall_per_freed_page", None, 3.5, 0).status == "only_b"
    new = Row("total", "faults", 0, 4, 0)
    assert new.relative == math.inf
    assert new.to_json()["new"] is True
    assert new.to_json()["relative"] is None
    assert Row("total", "faults", 4, 0, 0).relative == -1.0


def test_thresholds() -> None:
    known = {"faults", "faults_by_attribution.zapped_page_tables", "pages_freed"}
    t = parse_threshold("faults>0", known)
    assert t.crossed(Row("total", "faults", 10, 11, 0))
    assert not t.crossed(Row("total", "faults", 10, 10, 0))
    pct = parse_threshold("faults>5%", known)
    assert not pct.crossed(Row("total", "faults", 100, 105, 0))
    assert pct.crossed(Row("total", "faults", 100, 106, 0))
    drop = parse_threshold("pages_freed<-10%", known)
    assert drop.crossed(Row("total", "pages_freed", 100, 89, 0))
    assert not drop.crossed(Row("total", "pages_freed", 100, 95, 0))
    with pytest.raises(ReplayError, match="did you mean faults"):
        parse_threshold("fualts>1", known)
    with pytest.raises(ReplayError, match="METRIC>LIMIT"):
        parse_threshold("faults=3", known)


def test_load_run_refuses_what_is_not_a_run(legacy_runs: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="holds runs"):
        load_run(legacy_runs)
    with pytest.raises(RunFormatError, match="not a run"):
        load_run(tmp_path)
    with pytest.raises(RunFormatError, match="does not exist"):
        load_run(tmp_path / "nope")
    newer = tmp_path / "newer"
    shutil.copytree(legacy_runs / "zap", newer)
    doc = json.loads((newer / "summary.json").read_text())
    doc["schema_version"] = 2
    (newer / "summary.json").write_text(json.dumps(doc))
    with pytest.raises(RunFormatError, match="newer"):
        load_run(newer)
    (newer / "summary.json").write_text("{not json")
    with pytest.raises(RunFormatError, match="damaged"):
        load_run(newer)
