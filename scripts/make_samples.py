"""Regenerate the small sample traces in traces/samples/ (used by the README and the tests).

Usage: python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

from replay.synth import generate, load_scenario

SAMPLES = Path(__file__).resolve().parents[1] / "traces" / "samples"


def main() -> None:
    for name in ("quick",):
        out = SAMPLES / f"{name}.parquet"
        out.unlink(missing_ok=True)
        result = generate(load_scenario(name), out)
        print(f"{out}: {result.rows} rows, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
