"""Benchmark of ``replay fleet`` (issue 14), kept out of the test run.

Usage::

    python scripts/bench_fleet.py [--traces 8] [--accesses 5000000] [--small 8,64] [--keep DIR]

Side by side in one run, on the same traces (scenarios and seeds cycled, generated once and kept
under ``--keep``, by default in the system's temporary folder, for the next run):

* a plain sequential loop of ``replay run``'s code (open, replay the three policies, write the
  runs) over the traces, in one process with ``replay run``'s process settings: its wall time
  and peak memory; and the peak memory of one ``replay run`` command (a fresh process);
* the same traces as a fleet on a local cluster of 1 worker, then of 2 workers, alternated
  ``--repeat`` times, the best of each compared (cluster start-up included): wall time,
  speed-up of 2 workers over 1, overhead of 1 worker over the loop, and each worker process's
  peak memory (reported by the workers themselves);
* the client's peak memory with 2 workers at ``--small`` counts of small traces (20,000
  accesses), which must not grow with the number of traces.

``bench_fleet()`` returns the numbers as a dict (``scripts/bench.py fleet`` records them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS = ("quick", "many-small-vms", "tdp-host-pressure", "legacy-mmu-pressure")
SMALL_ACCESSES = 20_000

_LOOP = """
import replay.cli._process  # the process settings replay run makes, before numpy and pyarrow
import json, resource, sys, time
from pathlib import Path
from replay.run.driver import run_policies
from replay.run.folder import runs_folder
from replay.run.outputs import write_runs
from replay.trace.reader import open_trace
out = Path(sys.argv[1])
t0 = time.perf_counter()
for i, trace in enumerate(sys.argv[2:]):
    target = out / str(i)
    policies = ("zap", "none", "cache")
    with runs_folder(target) as folder:
        replay = run_policies(open_trace(trace), policies, workdir=folder.staging)
        write_runs(replay, target, folder=folder)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_mib": peak}))
"""

_FLEET = """
import json, resource, sys, time
from pathlib import Path
from replay.fleet import run_fleet
t0 = time.perf_counter()
result = run_fleet(sys.argv[3:], Path(sys.argv[1]), workers=int(sys.argv[2]))
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
jobs = result.doc["jobs"]
print(json.dumps({
    "wall_s": wall,
    "client_peak_mib": peak,
    "failed": len(result.failed),
    "worker_peak_mib": max(j["peak_rss_mib"] or 0 for j in jobs),
    "job_wall_s": sum(j["wall_s"] or 0 for j in jobs),
}))
"""


_ONE_RUN = """
import json, resource, subprocess, sys
subprocess.run([sys.executable, "-m", "replay", "run", sys.argv[2], "-o", sys.argv[1]],
               check=True, capture_output=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"peak_mib": peak}))
"""


def _python(code: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench child failed:\n{proc.stderr}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def make_traces(folder: Path, count: int, accesses: int) -> list[Path]:
    """``count`` traces of ``accesses`` accesses, scenarios and seeds cycled; kept if present."""
    from replay.synth import generate, load_scenario

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        path = folder / f"{scenario}-{i}.parquet"
        if not path.exists():
            generate(load_scenario(scenario, seed=i + 1, accesses=accesses), path)
        paths.append(path)
    return paths


def bench_fleet(
    keep: Path,
    *,
    traces: int = 8,
    accesses: int = 5_000_000,
    small: tuple[int, ...] = (8, 64),
    repeat: int = 2,
) -> dict[str, Any]:
    """Run the measurements the module docstring lists; return them."""
    big = [str(p) for p in make_traces(keep / f"traces-{accesses}", traces, accesses)]
    results: dict[str, Any] = {"traces": traces, "accesses_per_trace": accesses}
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        work = Path(tmp)
        results["loop"] = _python(_LOOP, str(work / "loop"), *big)
        results["replay_run_peak_mib"] = max(
            _python(_ONE_RUN, str(work / f"one{i}"), trace)["peak_mib"]
            for i, trace in enumerate(big[:2])
        )
        # Alternated and repeated: the machine is shared, so the best of each is compared,
        # and the load average before each run is recorded beside it.
        for attempt in range(repeat):
            for workers in (1, 2):
                folder = work / f"fleet{workers}-{attempt}"
                load = os.getloadavg()[0]
                res = _python(_FLEET, str(folder), str(workers), *big)
                res["loadavg_1min_before"] = round(load, 2)
                shutil.rmtree(folder, ignore_errors=True)
                runs = results.setdefault(f"fleet_{workers}_worker_runs", [])
                runs.append(res)
        for workers in (1, 2):
            runs = results[f"fleet_{workers}_worker_runs"]
            results[f"fleet_{workers}_worker"] = min(runs, key=lambda r: r["wall_s"])
        for n in small:
            paths = make_traces(keep / f"small-{n}", n, SMALL_ACCESSES)
            results[f"client_{n}_small_traces"] = _python(
                _FLEET, str(work / f"small{n}"), "2", *(str(p) for p in paths)
            )
            shutil.rmtree(work / f"small{n}", ignore_errors=True)
    one, two = results["fleet_1_worker"]["wall_s"], results["fleet_2_worker"]["wall_s"]
    results["speedup_2_over_1"] = round(one / two, 3)
    results["overhead_1_worker_over_loop"] = round(one / results["loop"]["wall_s"], 3)
    results["accesses_per_s_2_workers"] = round(traces * accesses / two)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=8)
    parser.add_argument("--accesses", type=int, default=5_000_000)
    parser.add_argument("--small", default="8,64", help="counts of small traces, for the client")
    parser.add_argument(
        "--keep",
        type=Path,
        default=Path(tempfile.gettempdir()) / "kvm-mmu-replay-bench-fleet",
        help="folder for the generated traces, kept for the next run",
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each fleet, alternated")
    args = parser.parse_args()
    t0 = time.perf_counter()
    res = bench_fleet(
        args.keep,
        traces=args.traces,
        accesses=args.accesses,
        small=tuple(int(n) for n in args.small.split(",")),
        repeat=args.repeat,
    )
    res["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=2))
    loop, one, two = res["loop"], res["fleet_1_worker"], res["fleet_2_worker"]
    print(
        f"\nloop {loop['wall_s']:.1f} s (peak {loop['peak_mib']:.0f} MiB); fleet 1 worker "
        f"{one['wall_s']:.1f} s ({res['overhead_1_worker_over_loop']:.2f}x the loop, target "
        f"<= 1.15x); 2 workers {two['wall_s']:.1f} s ({res['speedup_2_over_1']:.2f}x faster "
        f"than 1, target >= 1.7x); worker peak {two['worker_peak_mib']:.0f} MiB (one replay "
        f"run: {res['replay_run_peak_mib']:.0f} MiB); client peak "
        + ", ".join(
            f"{res[f'client_{n}_small_traces']['client_peak_mib']:.0f} MiB at {n} traces"
            for n in args.small.split(",")
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
