"""The bundled sample trace is what its scenario generates (scripts/make_samples.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from replay.synth import generate, load_scenario

SAMPLE = Path(__file__).resolve().parents[2] / "traces" / "samples" / "quick.parquet"


def test_quick_sample_matches_its_scenario(tmp_path: Path) -> None:
    fresh = tmp_path / "quick.parquet"
    generate(load_scenario("quick"), fresh)
    assert pq.read_table(SAMPLE).equals(pq.read_table(fresh)), (
        "traces/samples/quick.parquet is stale: run python scripts/make_samples.py"
    )
    assert (
        pq.read_metadata(SAMPLE).metadata[b"replay.trace"]
        == (pq.read_metadata(fresh).metadata[b"replay.trace"])
    )
