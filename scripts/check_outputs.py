"""Fingerprint every output the tool writes, to show a change left behaviour unchanged.

Usage::

    python scripts/check_outputs.py record MANIFEST.json [--work DIR] [--reference-accesses N]
    python scripts/check_outputs.py compare MANIFEST.json [--work DIR] [--reference-accesses N]

For every shipped scenario it writes, with the installed ``replay`` command: the synthetic trace
(``replay synth``); the runs of every policy with the fast engine on the whole trace and with the
reference engine on a shorter trace of the same scenario (``--reference-accesses``, the reference
engine runs at tens of thousands of accesses a second); each scenario rendered as ftrace, perf
and trace-cmd text and converted back (``replay synth --as``, ``replay convert``); the
``replay diff --json`` of zap against cache. Every file is hashed (sha256); a run's
``summary.json`` is hashed without its timing (``wall_s``), the only field that may differ
between two runs of one trace. ``record`` writes the hashes to MANIFEST.json; ``compare``
recomputes them and lists every file whose hash changed (exit 1 if any did).

Restructuring changes (no behaviour change intended) are checked with ``record`` on the commit
before and ``compare`` on the commit after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p.stem for p in (ROOT / "traces" / "scenarios").glob("*.toml"))
LAYOUTS = ("ftrace", "perf", "trace-cmd")
TIMINGS = ("wall_s",)
"""Fields of summary.json that measure time, and so differ from run to run."""


def _replay(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["replay", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 4):
        sys.exit(f"replay {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _digest(path: Path) -> str:
    if path.name == "summary.json":
        doc = json.loads(path.read_text())
        for key in TIMINGS:
            doc.pop(key, None)
        data = json.dumps(doc, sort_keys=True).encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def _diff_json(text: str) -> str:
    """``replay diff --json`` without the timings its runs report."""
    doc = json.loads(text)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items() if k not in TIMINGS}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return hashlib.sha256(json.dumps(scrub(doc), sort_keys=True).encode()).hexdigest()


def fingerprints(work: Path, reference_accesses: int) -> dict[str, str]:
    """Write every output into ``work`` and return {relative path: sha256}."""
    out: dict[str, str] = {}
    for name in SCENARIOS:
        print(f"{name} ...", flush=True)
        trace = f"{name}.parquet"
        _replay("synth", name, "-o", trace, cwd=work)
        _replay("run", trace, "-o", f"runs/{name}/fast", cwd=work)
        small = f"{name}-small.parquet"
        _replay("synth", name, "-o", small, "--accesses", str(reference_accesses), cwd=work)
        _replay("run", small, "-o", f"runs/{name}/fast-small", cwd=work)
        _replay("run", small, "--engine", "reference", "-o", f"runs/{name}/reference", cwd=work)
        diff = _replay(
            "diff", f"runs/{name}/fast/zap", f"runs/{name}/fast/cache", "--json", cwd=work
        )
        out[f"diff/{name}.json"] = _diff_json(diff)
        for layout in LAYOUTS:
            log = f"{name}-small.{layout}.txt"
            _replay(
                "synth",
                name,
                "--accesses",
                str(reference_accesses // 4),
                "--as",
                layout,
                "-o",
                log,
                cwd=work,
            )
            _replay(
                "convert",
                log,
                "--vm-config",
                f"{log}.vms.toml",
                "-o",
                f"{name}-{layout}.converted.parquet",
                cwd=work,
            )
    for path in sorted(work.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(work))] = _digest(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--work", type=Path, help="keep the outputs in this folder")
    parser.add_argument("--reference-accesses", type=int, default=200_000)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="check-outputs-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    got = fingerprints(work, args.reference_accesses)
    if args.mode == "record":
        args.manifest.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(got)} fingerprints in {args.manifest}")
        return
    want = json.loads(args.manifest.read_text())
    changed = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
    missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    for label, names in (("changed", changed), ("missing", missing), ("new", extra)):
        for n in names:
            print(f"{label}: {n}")
    if changed or missing or extra:
        sys.exit(f"{len(changed)} changed, {len(missing)} missing, {len(extra)} new")
    print(f"all {len(got)} outputs identical (summaries apart from {', '.join(TIMINGS)})")


if __name__ == "__main__":
    main()
