"""Fidelity on faults-only traces (issue 12 item 19), checked where the right answer is known.

A synthetic trace rendered as kernel text (``replay synth --as``) logs every access as a fault,
hits included, so converted back, the logged faults the model does not explain are exactly the
hits of the synthetic trace's own replay. A faults-only trace made of exactly the faults a
replay took is explained whole by a replay under the same policy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replay.convert import ConvertOptions, convert_logs
from replay.convert.render import render_trace
from replay.run import run_policies, write_runs
from replay.run.fidelity import REASONS, fidelity_caveat, likely_reasons, warnings_of
from replay.synth import generate, load_scenario
from replay.trace import open_trace

if TYPE_CHECKING:
    from pathlib import Path

POLICIES = ("zap", "none", "cache")


def _replay(trace: Path, out: Path, policies: tuple[str, ...] = POLICIES) -> dict[str, Any]:
    docs = write_runs(run_policies(open_trace(trace), policies), out)  # type: ignore[arg-type]
    return {d["policy"]: d for d in docs}


def _round_trip(trace: Path, tmp: Path, name: str) -> Path:
    """``trace`` rendered as ftrace text and converted back with its VM table."""
    log = tmp / f"{name}.txt"
    render_trace(open_trace(trace), "ftrace", log)
    back = tmp / f"{name}.parquet"
    convert_logs([str(log)], back, ConvertOptions(vm_config=log.with_name(log.name + ".vms.toml")))
    return back


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fidelity")
    trace = tmp / "synth.parquet"
    generate(load_scenario("quick", seed=3, accesses=20_000), trace)
    return trace


def test_every_access_logged_as_a_fault_leaves_the_hits_unexplained(
    synthetic: Path, tmp_path: Path
) -> None:
    # Policy none: the synthetic trace's shrink call, which has no kernel text, changes nothing.
    want = _replay(synthetic, tmp_path / "all")["none"]["totals"]
    assert want["hits"] > 0, "the premise: the synthetic replay has hits"
    assert "logged_faults" not in want, "an all-accesses trace logs no fault"
    got = _replay(_round_trip(synthetic, tmp_path, "all"), tmp_path / "back", ("none",))["none"]
    totals = got["totals"]
    assert totals["logged_faults"] == want["accesses"]
    assert totals["faults"] == want["faults"]
    assert totals["faults_unexplained"] == want["hits"]
    per_vm = got["per_vm"]
    assert sum(b["faults_unexplained"] for b in per_vm.values()) == want["hits"]
    timeline = pq.read_table(tmp_path / "back" / "none" / "timeline.parquet")
    column = timeline.column("faults_unexplained").to_numpy()
    assert column.sum() == want["hits"]
    assert np.array_equal(
        column, timeline.column("accesses").to_numpy() - timeline.column("faults").to_numpy()
    )


def _faults_only(trace: Path, faults: Path, out: Path) -> Path:
    """The trace's accesses that faulted in a run (and every other event), as faults-only."""
    table = pq.read_table(trace)
    rows = pq.read_table(faults, columns=["row"]).column("row")
    keep = pc.or_(
        pc.not_equal(table.column("event").cast(pa.string()), "access"),
        pc.is_in(pa.array(np.arange(table.num_rows)), rows),
    )
    meta = dict(pq.ParquetFile(trace).metadata.metadata)
    meta.pop(b"ARROW:schema", None)
    footer = json.loads(meta[b"replay.trace"])
    footer["coverage"] = "faults-only"
    meta[b"replay.trace"] = json.dumps(footer).encode()
    pq.write_table(table.filter(keep).replace_schema_metadata(meta), out)
    return out


@pytest.mark.parametrize(
    ("policy", "as_text"), [("none", False), ("zap", False), ("cache", False), ("none", True)]
)
def test_a_log_of_the_models_own_faults_is_explained_whole(
    synthetic: Path, tmp_path: Path, policy: str, as_text: bool
) -> None:
    """As text only under none: the trace's direct shrink call has no kernel text, and a lost
    shrinker call leaves the pages it zapped mapped in the model (faults it cannot explain)."""
    first = _replay(synthetic, tmp_path / "all", (policy,))[policy]["totals"]
    own = _faults_only(synthetic, tmp_path / "all" / policy / "faults.parquet", tmp_path / "f.pq")
    back = _round_trip(own, tmp_path, "own") if as_text else own
    totals = _replay(back, tmp_path / "back", (policy,))[policy]["totals"]
    assert totals["logged_faults"] == first["faults"]
    assert totals["faults_unexplained"] == 0
    assert totals["faults"] == first["faults"]


def test_the_converter_records_its_warnings_and_the_run_names_them(tmp_path: Path) -> None:
    """The shared kvm-head capture: shadow paging, inferred memslots and one VM for the log."""
    from tests.convert.helpers import LOGS

    trace = tmp_path / "host.parquet"
    report = convert_logs(
        [str(LOGS / "ftrace-kvm-head.txt"), str(LOGS / "ftrace-vmscan-dropcaches.txt")],
        trace,
        ConvertOptions(),
    )
    provenance = open_trace(trace).meta.provenance
    kinds = [kind for kind, _ in warnings_of(provenance)]
    assert [text for _, text in warnings_of(provenance)] == report.warnings
    assert {"shadow_paging", "memslots_inferred", "single_vm"} <= set(kinds)
    doc = _replay(trace, tmp_path / "runs", ("none",))["none"]
    assert doc["trace"]["likely_reasons"] == [
        REASONS[k] for k in ("shadow_paging", "memslots_inferred", "single_vm")
    ]
    assert fidelity_caveat(doc["trace"]["likely_reasons"]) in doc["caveats"]


@pytest.mark.parametrize(
    "provenance",
    [None, [], {"warnings": "x"}, {"warnings": [1, {"kind": 2}, {"kind": "shadow_paging"}]}],
)
def test_provenance_of_another_writer_gives_no_reason(provenance: Any) -> None:
    assert likely_reasons(provenance) == []


def test_unknown_kinds_are_no_reason() -> None:
    prov = {
        "warnings": [{"kind": "reclaim_guessed", "text": "t"}, {"kind": "lost_events", "text": "u"}]
    }
    assert likely_reasons(prov) == [REASONS["lost_events"]]


def test_diff_and_report_show_it_first(synthetic: Path, tmp_path: Path) -> None:
    from replay.diff import diff_runs
    from replay.diff.render import markdown
    from replay.report import write_report
    from replay.run import load_run

    back = _round_trip(synthetic, tmp_path, "all")
    docs = _replay(back, tmp_path / "runs", ("zap", "none"))
    runs = [load_run(tmp_path / "runs" / p) for p in ("zap", "none")]
    text = markdown(diff_runs(*runs))
    first = text.split("\n\n")[1]
    unexplained = [docs[p]["totals"]["faults_unexplained"] for p in ("zap", "none")]
    logged = docs["zap"]["totals"]["logged_faults"]
    assert first.startswith("**Fidelity (faults-only trace)")
    assert f"A {unexplained[0]:,} of {logged:,}" in first
    assert f"B {unexplained[1]:,} of {logged:,}" in first
    html = write_report(runs, tmp_path / "r.html").html.read_text()
    assert html.index("Fidelity: logged faults") < html.index("<h2>Headline</h2>")
    explained = logged - unexplained[0]
    assert f"the model explains {explained:,} of {logged:,} logged faults" in html
