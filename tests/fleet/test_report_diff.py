"""`replay report FLEET_DIR` and `replay diff FLEET_A FLEET_B`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from tests.fleet.helpers import replay


def test_fleet_report_draws_distributions_frontier_and_links_worst_runs(
    inprocess_fleet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fleet-report.html"
    proc = replay("report", str(inprocess_fleet), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    names = sorted(Path(p).name for p in doc["pngs"])
    assert names == [
        "fleet-report-faults.png",
        "fleet-report-frontier.png",
        "fleet-report-stall-cdf.png",
    ]
    for png in doc["pngs"]:
        data = Path(png).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) > 10_000  # a drawn figure, not an empty canvas
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "Worst traces by estimated shrinker stall" in page
    fleet = json.loads((inprocess_fleet / "fleet.json").read_text())
    for worst in fleet["worst"]:
        # Each worst trace links to its run, relative to the page, and the link resolves.
        run = inprocess_fleet / worst["run"]
        href = os.path.relpath(run / "summary.json", out.parent)
        assert f'href="{href}"' in page
        assert (out.parent / href).is_file()


def test_report_of_an_unfinished_fleet_is_one_line(tmp_path: Path, traces: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "fleet.json").write_text(
        json.dumps({"schema_version": 1, "kind": "replay.fleet", "state": "running"})
    )
    proc = replay("report", str(tmp_path / "f"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: fleet {tmp_path / 'f'} is not finished (it was interrupted); re-run the same "
        "replay fleet command to complete it"
    ]


def test_diff_of_two_fleets_job_by_job_with_a_gate(
    inprocess_fleet: Path, traces: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.toml"
    model.write_text("shrink_batch = 64\n")
    b = tmp_path / "b"
    proc = replay(
        "fleet",
        str(traces / "quick-1.parquet"),
        str(traces / "quick-2.parquet"),
        "-o",
        str(b),
        "--scheduler",
        "inprocess",
        "--sweep",
        "cache_capacity=20,40",
        "--model",
        str(model),
    )
    assert proc.returncode == 0, proc.stderr
    same = replay(
        "diff",
        str(inprocess_fleet),
        str(inprocess_fleet),
        "--fail-on",
        "shrinker_stall_ns>0",
        "--json",
    )
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["fleet"] == []
    proc = replay("diff", str(inprocess_fleet), str(b), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "fleet"
    # Jobs are matched by fingerprint, point and policy: the four other traces are only in A.
    assert len(doc["only_a"]) == 4 * 2 * 3
    assert doc["only_b"] == []
    table_a = pl.read_parquet(inprocess_fleet / "fleet.parquet")
    table_b = pl.read_parquet(b / "fleet.parquet")
    # A fleet-wide row is the sum over the matched jobs.
    (row,) = [
        r
        for r in doc["fleet"]
        if r["scope"] == "zap @ cache_capacity=40" and r["metric"] == "pages_freed"
    ]
    keep = (pl.col("policy") == "zap") & (pl.col("point") == "cache_capacity=40")
    matched = table_a.filter(keep & pl.col("fingerprint").is_in(table_b["fingerprint"].to_list()))
    assert row["a"] == matched["pages_freed"].sum()
    assert row["b"] == table_b.filter(keep)["pages_freed"].sum()
    assert row["b"] != row["a"]
    # The gate: exit 4, the crossing named on stderr.
    gated = replay("diff", str(inprocess_fleet), str(b), "--fail-on", "pages_freed>0")
    assert gated.returncode == 4, gated.stderr
    assert "--fail-on pages_freed>0: CROSSED at zap @ cache_capacity=40" in gated.stdout
    md = replay("diff", str(inprocess_fleet), str(b), "--markdown", "--fail-on", "pages_freed>0")
    assert md.returncode == 4, md.stderr
    assert md.stdout.startswith("## replay diff (fleets)\n")
    assert "| scope | metric | A | B | change | status |" in md.stdout
    assert "- --fail-on pages_freed>0: CROSSED at zap @ cache_capacity=40" in md.stdout
    bad = replay("diff", str(inprocess_fleet), str(b), "--fail-on", "pages_fred>0")
    assert bad.returncode == 1
    assert "did you mean pages_freed?" in bad.stderr
