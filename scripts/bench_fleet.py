"""Benchmark of ``replay fleet`` (issue 14), kept out of the test run.

Usage::

    python scripts/bench_fleet.py [--traces 8] [--accesses 5000000] [--small 8,64] [--repeat 3]

Side by side in one run, on the same traces (scenarios and seeds cycled, generated once and kept
under ``--keep``, by default in the system's temporary folder, for the next run), ``--repeat``
rounds of five measurements, each in a fresh process (the order reversed every other round, so
neither end of a round is always the one that meets a change of load):

* ``loop_default``: a plain sequential loop of ``replay run``'s code (open, replay the three
  policies, write the runs) over the traces in one process, with ``replay run``'s settings:
  what a shell loop of ``replay run`` costs;
* ``loop_one_core``: the same loop with the settings a fleet worker gives each job
  (``replay.fleet.worker.one_core_per_job`` and its environment): the fair baseline of the
  fleet's own overhead (scheduling, keys, the fleet table), the replay's work being the same;
* ``pair_one_core``: two such loops at once, each over half the traces (alternate ones): what
  two workers could do at best with no Dask at all, the machine's own ceiling;
* ``fleet_1``, ``fleet_2``: the traces as a fleet on a new local cluster of 1, then 2 workers
  (cluster start included).

Each measurement records its wall time, its CPU time (user + system, of every process it
started: the workers too), and the 1-minute load average and the CPU pressure (Linux PSI: the
share of the last 10 s in which a runnable task waited for a core) before and after it. The
figures are the medians over the rounds of each measurement's wall time and of the ratios taken
within a round (2 workers against 1; 1 worker against each loop). Also measured: the start and
stop of a local cluster of 1 and 2 workers with nothing to run, each worker process's peak
memory (reported by the workers), the peak memory of one ``replay run`` command (the largest
over one trace of each scenario), and the client's peak memory with 2 workers at ``--small``
counts of small traces (20,000 accesses), which must not grow with the number of traces.

``bench_fleet()`` returns the numbers as a dict (``scripts/bench.py fleet`` records them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS = ("quick", "many-small-vms", "tdp-host-pressure", "legacy-mmu-pressure")
SMALL_ACCESSES = 20_000
MEASUREMENTS = ("loop_default", "loop_one_core", "pair_one_core", "fleet_1", "fleet_2")

_LOOP = """
import os, sys
one_core = sys.argv[1] == "one_core"
if one_core:
    # A worker process of the local cluster starts with these (replay.fleet.executor).
    from replay.fleet.worker import ONE_CORE_ENV
    os.environ.update(ONE_CORE_ENV)
import replay.cli._process  # the process settings replay run makes, before numpy and pyarrow
import json, resource, time
from pathlib import Path
from replay.run.driver import run_policies
from replay.run.folder import runs_folder
from replay.run.outputs import write_runs
from replay.trace.reader import open_trace
options = {}
if one_core:
    from replay.fleet.worker import one_core_per_job
    options = one_core_per_job(1)
out = Path(sys.argv[2])
t0 = time.perf_counter()
for i, trace in enumerate(sys.argv[3:]):
    target = out / str(i)
    policies = ("zap", "none", "cache")
    with runs_folder(target) as folder:
        replay = run_policies(open_trace(trace), policies, workdir=folder.staging, **options)
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

_START = """
import json, sys, time
from replay.fleet.executor import DaskExecutor
if __name__ == "__main__":
    t0 = time.perf_counter()
    with DaskExecutor(None, int(sys.argv[1])):
        up = time.perf_counter() - t0
    print(json.dumps({"wall_s": time.perf_counter() - t0, "up_s": up}))
"""

_ONE_RUN = """
import json, resource, subprocess, sys
subprocess.run([sys.executable, "-m", "replay", "run", sys.argv[2], "-o", sys.argv[1]],
               check=True, capture_output=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"peak_mib": peak}))
"""


def _python(code: str, *args: str, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its JSON line, with wall, CPU and load around it.

    With ``also``, a second interpreter runs the same code on those arguments at the same
    time; the wall time is then the later one's.
    """
    load_before = os.getloadavg()[0]
    pressure_before = _cpu_pressure()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in ((args, also) if also else (args,))
    ]
    outputs = [p.communicate() for p in procs]
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"bench child failed:\n{stderr}")
    docs = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    out: dict[str, Any] = docs[0]
    if also:
        out["wall_s"] = max(d["wall_s"] for d in docs)
        out["peak_mib"] = max(d["peak_mib"] for d in docs)
    # Every process the child started and waited for is in its children's usage (the Dask
    # workers are children of the client, which waits for them when the cluster closes).
    out["cpu_s"] = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)
    out["process_s"] = round(elapsed, 2)
    out["wall_s"] = round(out.get("wall_s", elapsed), 2)
    out["load_before"] = round(load_before, 2)
    out["load_after"] = round(os.getloadavg()[0], 2)
    out["cpu_pressure_before"] = pressure_before
    out["cpu_pressure_after"] = _cpu_pressure()
    return out


def _cpu_pressure() -> float | None:
    """The share of the last 10 s (%) in which some runnable task waited for a core (Linux PSI).

    Steadier than the load average as a sign that other work took the cores: 0 on an idle
    machine, near 100 when something always waits.
    """
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(dict(f.split("=") for f in first.split()[1:])["avg10"])


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


def _measure(what: str, work: Path, traces: list[str]) -> dict[str, Any]:
    """One measurement of the round; its outputs removed after."""
    folder = work / what
    if what == "pair_one_core":
        one = ("one_core", str(folder / "a"), *traces[0::2])
        res = _python(_LOOP, *one, also=("one_core", str(folder / "b"), *traces[1::2]))
    elif what.startswith("loop_"):
        res = _python(_LOOP, what.removeprefix("loop_"), str(folder), *traces)
    else:
        res = _python(_FLEET, str(folder), what.removeprefix("fleet_"), *traces)
    shutil.rmtree(folder, ignore_errors=True)
    return res


def _median_ratio(rounds: list[dict[str, Any]], num: str, den: str) -> float:
    """The median over the rounds of ``num``'s wall time over ``den``'s in the same round."""
    ratios = [float(r[num]["wall_s"]) / float(r[den]["wall_s"]) for r in rounds]
    return round(statistics.median(ratios), 3)


def bench_fleet(
    keep: Path,
    *,
    traces: int = 8,
    accesses: int = 5_000_000,
    small: tuple[int, ...] = (8, 64),
    repeat: int = 3,
) -> dict[str, Any]:
    """Run the measurements the module docstring lists; return them."""
    big = [str(p) for p in make_traces(keep / f"traces-{accesses}", traces, accesses)]
    results: dict[str, Any] = {"traces": traces, "accesses_per_trace": accesses}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        work = Path(tmp)
        results["replay_run_peak_mib"] = max(
            _python(_ONE_RUN, str(work / f"one{i}"), trace)["peak_mib"]
            for i, trace in enumerate(big[: len(SCENARIOS)])
        )
        for attempt in range(repeat):
            order = MEASUREMENTS if attempt % 2 == 0 else MEASUREMENTS[::-1]
            rounds.append({what: _measure(what, work, big) for what in order})
        results["cluster_start_stop"] = {f"{n}_workers": _python(_START, str(n)) for n in (1, 2)}
        for n in small:
            paths = make_traces(keep / f"small-{n}", n, SMALL_ACCESSES)
            results[f"client_{n}_small_traces"] = _python(
                _FLEET, str(work / f"small{n}"), "2", *(str(p) for p in paths)
            )
            shutil.rmtree(work / f"small{n}", ignore_errors=True)
    results["rounds"] = rounds
    for what in MEASUREMENTS:
        results[f"{what}_s"] = round(statistics.median(r[what]["wall_s"] for r in rounds), 2)
        results[f"{what}_cpu_s"] = round(statistics.median(r[what]["cpu_s"] for r in rounds), 2)
    results["speedup_2_over_1"] = _median_ratio(rounds, "fleet_1", "fleet_2")
    results["overhead_1_worker_over_loop_one_core"] = _median_ratio(
        rounds, "fleet_1", "loop_one_core"
    )
    results["overhead_1_worker_over_loop_default"] = _median_ratio(
        rounds, "fleet_1", "loop_default"
    )
    results["speedup_2_workers_over_loop_default"] = _median_ratio(
        rounds, "loop_default", "fleet_2"
    )
    results["ceiling_pair_over_loop_one_core"] = _median_ratio(
        rounds, "loop_one_core", "pair_one_core"
    )
    results["worker_peak_mib"] = max(
        r[w]["worker_peak_mib"] for r in rounds for w in ("fleet_1", "fleet_2")
    )
    results["accesses_per_s_2_workers"] = round(traces * accesses / results["fleet_2_s"])
    results["load_range"] = [
        min(r[w]["load_before"] for r in rounds for w in MEASUREMENTS),
        max(r[w]["load_after"] for r in rounds for w in MEASUREMENTS),
    ]
    return results


def summary_line(res: dict[str, Any]) -> str:
    """The figures against their targets, in one paragraph."""
    small = [k for k in res if k.startswith("client_") and k.endswith("_small_traces")]
    return (
        f"medians of {len(res['rounds'])} rounds, load {res['load_range'][0]:.2f} to "
        f"{res['load_range'][1]:.2f}: loop of replay run {res['loop_default_s']:.1f} s "
        f"(one core per job: {res['loop_one_core_s']:.1f} s); fleet 1 worker "
        f"{res['fleet_1_s']:.1f} s ({res['overhead_1_worker_over_loop_one_core']:.2f}x the "
        f"one-core loop, target <= 1.15x; {res['overhead_1_worker_over_loop_default']:.2f}x the "
        f"default loop); 2 workers {res['fleet_2_s']:.1f} s ({res['speedup_2_over_1']:.2f}x "
        f"faster than 1, target >= 1.7x; {res['speedup_2_workers_over_loop_default']:.2f}x "
        f"faster than the default loop); two one-core loops at once, no Dask: "
        f"{res['pair_one_core_s']:.1f} s ({res['ceiling_pair_over_loop_one_core']:.2f}x one); "
        f"cluster start and stop {res['cluster_start_stop']['1_workers']['wall_s']:.1f} s (1 "
        f"worker), {res['cluster_start_stop']['2_workers']['wall_s']:.1f} s (2); worker peak "
        f"{res['worker_peak_mib']:.0f} MiB (one "
        f"replay run: {res['replay_run_peak_mib']:.0f} MiB); client peak "
        + ", ".join(
            f"{res[k]['client_peak_mib']:.0f} MiB at {k.split('_')[1]} traces" for k in small
        )
    )


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
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the four measurements")
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
    print("\n" + summary_line(res), file=sys.stderr)


if __name__ == "__main__":
    main()
