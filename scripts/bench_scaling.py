"""Benchmark of parallel replay (issue 16), kept out of the test run.

Usage::

    python scripts/bench.py scaling [--accesses 20000000] [--repeat 3] [--keep DIR]
    python scripts/bench_scaling.py [--accesses 20000000] [--repeat 3] [--keep DIR]

Side by side in one run, on ``legacy-mmu-pressure`` (8 VMs) and ``many-small-vms`` (100 VMs,
frequent shrinker calls) of ``--accesses`` accesses each (generated once, kept under
``--keep``):

* the whole ``replay run --policy zap`` and ``--policy zap,none,cache`` commands as fresh
  processes at ``--threads 1`` and ``--threads 2``, interleaved ``--repeat`` times: wall time,
  CPU time (user + system) and peak RSS, medians. CPU and memory are those of every process of
  the command (with several threads, the policies are replayed in child processes): the CPU of
  all of them, and the SUM of their peak resident sets (see ``_measured`` for how);
* a fresh process doing only pyarrow's ``read_table`` of the columns the engine reads, timed
  whole (interpreter and imports included, like the command) and around the call alone;
* the serial part of a one-thread replay, measured inside one process: start-up (process start
  to the replay's first line), host events, the wait for the reader, the fault writer's wait
  at the end and writing the runs; and from it Amdahl's bound for 8, 16 and 64 cores. (The
  trace counter and span checks run on the reader thread, beside the engine: timed, printed,
  not counted as serial.)

``bench_scaling()`` returns the numbers as a dict (``scripts/bench.py scaling`` records them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

TRACES = ("legacy-mmu-pressure", "many-small-vms")
POLICY_SETS = ("zap", "zap,none,cache")
THREADS = (1, 2)
READ_COLUMNS = ["t_ns", "event", "vm", "vcpu", "gpa", "len", "source", "priority", "nr_to_scan"]

_READ = """
import time
t0 = time.perf_counter()
import json, sys
import pyarrow.parquet as pq
t1 = time.perf_counter()
table = pq.read_table(sys.argv[1], columns=json.loads(sys.argv[2]))
print(json.dumps({"call_s": time.perf_counter() - t1, "rows": table.num_rows}))
"""

_SERIAL = """
import time, sys
LAUNCH = float(sys.argv[1])  # CLOCK_MONOTONIC when the parent started this process
import json
import replay.cli
import replay.mmu.host as host
import replay.run.driver as driver
import replay.run.outputs as outputs
import replay.run.sink as sink

spent = {"host_s": 0.0, "counter_s": 0.0, "writer_wait_s": 0.0, "replay_s": 0.0}
marks = {}

def timed(owner, name, key):
    inner = getattr(owner, name)
    def wrapper(*a, **k):
        t0 = time.monotonic()
        marks.setdefault(key + "_first", t0 - LAUNCH)
        try:
            return inner(*a, **k)
        finally:
            spent[key] = spent.get(key, 0.0) + time.monotonic() - t0
            marks[key + "_end"] = time.monotonic() - LAUNCH
    setattr(owner, name, wrapper)

timed(host.HostEvents, "apply", "host_s")
timed(driver._TraceCounter, "add", "counter_s")
timed(sink.FaultSink, "_drain", "writer_wait_s")
timed(driver, "run_policies", "replay_s")
timed(outputs, "write_runs", "write_runs_s")
result = {}
real = driver.run_policies
def keep(*a, **k):
    r = real(*a, **k)
    result["read_wait_s"] = r.read_s
    result["engine_s"] = r.runs[0].wall_s
    return r
driver.run_policies = keep
sys.argv = ["replay", "run", *sys.argv[2:], "--json"]
try:
    replay.cli.main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps({**spent, **result, "startup_s": marks["replay_s_first"],
                  "end_s": time.monotonic() - LAUNCH}), file=sys.stderr)
"""


_PROBE = """
import json, os, resource, subprocess, sys, threading, time

def tree(root):
    # The command and its descendants (forked from their parents' main threads).
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out

def memory(pid):
    got = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    got[line[:5]] = int(line.split()[1])
    except OSError:  # it has ended
        pass
    return got

t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
peaks, top, done = {}, [0], threading.Event()

def sample():
    while not done.wait(0.01):
        now = 0
        for pid in tree(p.pid):
            m = memory(pid)
            if m:
                peaks[pid] = max(peaks.get(pid, 0), m.get("VmHWM", 0))
                now += m.get("VmRSS", 0)
        top[0] = max(top[0], now)

threading.Thread(target=sample, daemon=True).start()
out = p.stdout.read()
_, status, own = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
done.set()
peaks[p.pid] = own.ru_maxrss  # the command's own peak, exact
u = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and every child it reaped
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "wall_s": wall,
                  "cpu_s": u.ru_utime + u.ru_stime, "peak_mib": sum(peaks.values()) / 1024,
                  "own_peak_mib": own.ru_maxrss / 1024, "processes": len(peaks),
                  "peak_of_sum_mib": top[0] / 1024, "out": out.decode()}))
"""


def _measured(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` in a fresh child of a fresh child: its wall and CPU time and its memory.

    CPU is the command's and every process it started and reaped (``RUSAGE_CHILDREN``).
    ``peak_mib`` is the SUM of the peak resident sets of the command's processes: its own
    (``wait4``'s ``ru_maxrss``, exact) and each child's high-water mark (``VmHWM``) sampled from
    ``/proc`` every 10 ms until it ends (growth in its last 10 ms is missed). Pages a forked
    child shares with its parent count in both, so the sum overstates what the tree holds;
    ``peak_of_sum_mib`` (the largest total of the processes' resident sets at one sample) is
    the other side of the bracket. ``out`` is the command's standard output.
    """
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *cmd], check=True, capture_output=True, text=True
    )
    doc: dict[str, Any] = json.loads(proc.stdout)
    if doc["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({doc['rc']})")
    return doc


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def bench_scaling(keep: Path, accesses: int, repeat: int) -> dict[str, Any]:
    """Measure, print and return the scaling table, the read and the serial fraction.

    The traces are generated into ``keep`` unless there already; the runs go to a temporary
    folder, so that ``keep`` is only read (several benchmarks may share it).
    """
    keep.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"load_before": _load()}
    print(f"parallel replay, {accesses:,} accesses a trace; load average {out['load_before']}")
    with tempfile.TemporaryDirectory(prefix="replay-bench-scaling-") as tmp:
        for scenario in TRACES:
            trace = keep / f"{scenario}-{accesses}.parquet"
            benchlib.synth_to(scenario, accesses, trace)
            medians = _medians(trace, Path(tmp), repeat)
            out[scenario] = medians
            _print_table(scenario, medians, repeat)
            out[f"{scenario}_serial"] = _serial(trace, Path(tmp))
    out["load_after"] = _load()
    print(f"load average after: {out['load_after']}")
    return out


def _medians(trace: Path, runs: Path, repeat: int) -> dict[str, dict[str, float]]:
    """The read and every command on ``trace``, interleaved ``repeat`` times: medians."""
    samples: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeat):
        read = _measured([sys.executable, "-c", _READ, str(trace), json.dumps(READ_COLUMNS)])
        read["call_s"] = json.loads(read.pop("out"))["call_s"]
        samples.setdefault("read", []).append(read)
        for policies in POLICY_SETS:
            for threads in THREADS:
                cmd = [sys.executable, "-m", "replay", "run", str(trace), "-p", policies]
                cmd += ["-o", str(runs / "runs"), "--force", "--threads", str(threads)]
                doc = _measured(cmd)
                doc.pop("out")
                samples.setdefault(f"{policies}@{threads}", []).append(doc)
    return {
        case: {k: statistics.median(s[k] for s in got) for k in got[0]}
        for case, got in samples.items()
    }


def _print_table(scenario: str, medians: dict[str, dict[str, float]], repeat: int) -> None:
    read = medians["read"]
    print(f"{scenario}: medians of {repeat}, fresh processes")
    print(
        f"  pyarrow read_table, whole process {read['wall_s']:.2f} s (the call alone "
        f"{read['call_s']:.2f} s), CPU {read['cpu_s']:.2f} s, peak {read['peak_mib']:.0f} MiB"
    )
    print(
        "  command                       threads   wall s   CPU s  peak MiB  wall/read"
        "  (processes, peak of the sum)"
    )
    for policies in POLICY_SETS:
        for threads in THREADS:
            m = medians[f"{policies}@{threads}"]
            print(
                f"  replay run -p {policies:<15} {threads:>7} {m['wall_s']:>8.2f} "
                f"{m['cpu_s']:>7.2f} {m['peak_mib']:>9.0f} {m['wall_s'] / read['wall_s']:>9.2f}x"
                f"  ({m['processes']:.0f}, {m['peak_of_sum_mib']:.0f} MiB)"
            )
        one, two = medians[f"{policies}@1"], medians[f"{policies}@2"]
        print(
            f"    2 threads / 1: wall {two['wall_s'] / one['wall_s']:.2f}x, "
            f"peak RSS {two['peak_mib'] / one['peak_mib']:.2f}x (bound 1.5x)"
        )


def amdahl(serial: float, cores: int) -> float:
    """Amdahl's speed-up on ``cores`` for a serial fraction ``serial`` of the one-core time."""
    return 1.0 / (serial + (1.0 - serial) / cores)


def _serial(trace: Path, runs: Path) -> dict[str, float]:
    """The serial parts of a one-thread, one-policy replay, and Amdahl's bounds from them."""
    args = [str(trace), "-p", "zap", "-o", str(runs / "runs-serial"), "--force", "--threads", "1"]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _SERIAL, str(t0), *args], check=True, capture_output=True, text=True
    )
    s: dict[str, float] = json.loads(proc.stderr.strip().splitlines()[-1])
    s["exit_s"] = time.monotonic() - t0 - s["end_s"]  # interpreter teardown
    s["end_s"] += s["exit_s"]
    serial = (
        s["startup_s"]
        + s["host_s"]
        + s["read_wait_s"]
        + s["writer_wait_s"]
        + s["write_runs_s"]
        + s["exit_s"]
    )
    s["serial_s"] = serial
    s["serial_fraction"] = serial / s["end_s"]
    for cores in (8, 16, 64):
        s[f"amdahl_{cores}"] = amdahl(s["serial_fraction"], cores)
    print(
        f"  serial part of a one-thread zap replay ({s['end_s']:.2f} s, process start to end): "
        f"start-up {s['startup_s']:.2f}, host events {s['host_s']:.3f}, waiting for the "
        f"reader {s['read_wait_s']:.2f}, for the writer "
        f"{s['writer_wait_s']:.2f}, writing the runs {s['write_runs_s']:.2f}, exit "
        f"{s['exit_s']:.2f} s = "
        f"{serial:.2f} s, fraction {s['serial_fraction']:.2f} (the counter and span checks, "
        f"{s['counter_s']:.2f} s, run on the reader thread beside the engine)"
    )
    print(
        "  Amdahl: at most "
        + ", ".join(f"{s[f'amdahl_{c}']:.1f}x on {c} cores" for c in (8, 16, 64))
    )
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accesses", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    keep = args.keep or Path(tempfile.gettempdir()) / "kvm-mmu-replay-bench-scaling"
    print(json.dumps(bench_scaling(keep, args.accesses, args.repeat), indent=1))


if __name__ == "__main__":
    main()
