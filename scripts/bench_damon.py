"""Validation of DAMON-sampled replays against ground truth (``python scripts/bench.py damon``).

For each scenario and seed: T = the all-accesses trace (``replay synth``); what a 6.13+ host
records of it = the faults a ``none`` replay has, with the host's events (``replay synth --as
ftrace --faults-under none``), plus DAMON's record of the accesses (``replay synth --as damon``,
damo ``json_compressed``, which carries its intervals); T' = ``replay convert`` of both; then T
and T' are replayed under zap, none and cache, and T' is compared with T per policy:
zapped-page-table faults, cache-eviction faults, pages freed by the shrinker and estimated stall
per freed page, as relative errors (T' - T) / T. ``none`` and ``cache`` replays of T' must have
exactly the faults of the rendered log (they are the real faults): checked, not just reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SCENARIOS = ("quick", "legacy-mmu-pressure", "tdp-host-pressure", "host-swap", "many-small-vms")
POLICIES = ("zap", "none", "cache")
METRICS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "zapped_page_table_faults": lambda t: t["faults_by_attribution"]["zapped_page_tables"],
    "cache_eviction_faults": lambda t: t["faults_by_attribution"]["cache_eviction"],
    "pages_freed": lambda t: t["pages_freed"],
    "stall_per_freed_page": lambda t: t["stall_per_freed_page"],
}


def _replay(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "replay", *args], check=False, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"replay {' '.join(args)} failed: {done.stderr.strip()}")


def _totals(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {p: json.loads((run_dir / p / "summary.json").read_text())["totals"] for p in POLICIES}


def rel(truth: float | None, est: float | None) -> float | None:
    """(est - truth) / truth; None when the truth is 0 or undefined (reported as counts)."""
    if truth is None or est is None or truth == 0:
        return None
    return (est - truth) / truth


def one(
    scenario: str,
    seed: int,
    work: Path,
    intervals: tuple[int, int] | None,
    accesses: int | None = None,
) -> dict[str, Any]:
    """Validate one scenario and seed; return both runs' figures and the errors."""
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{scenario}-{seed}" + (f"-{accesses}" if accesses else "")
    more = ("--accesses", str(accesses)) if accesses else ()
    t_path, none_log, damo = work / f"{tag}.parquet", work / f"{tag}.none.txt", work / f"{tag}.damo"
    started = time.perf_counter()
    _replay("synth", scenario, "--seed", str(seed), *more, "-o", str(t_path), "--force")
    _replay(
        "synth", scenario, "--seed", str(seed), *more, "--as", "ftrace", "--faults-under", "none",
        "-o", str(none_log), "--force",
    )  # fmt: skip
    damon = ["--damon-format", "json_compressed"]
    if intervals is not None:
        damon += ["--damon-intervals", f"{intervals[0]},{intervals[1]}"]
    _replay(
        "synth",
        scenario,
        "--seed",
        str(seed),
        *more,
        "--as",
        "damon",
        *damon,
        "-o",
        str(damo),
        "--force",
    )
    t_prime = work / f"{tag}.sampled.parquet"
    _replay(
        "convert", str(none_log), str(damo), "--vm-config", f"{none_log}.vms.toml",
        "-o", str(t_prime), "--force",
    )  # fmt: skip
    _replay("run", str(t_path), "-o", str(work / f"{tag}.runs"), "--force")
    _replay("run", str(t_prime), "-o", str(work / f"{tag}.sampled.runs"), "--force")
    truth, est = _totals(work / f"{tag}.runs"), _totals(work / f"{tag}.sampled.runs")
    logged = est["none"]["logged_faults"]
    exact = all(est[p]["faults"] == logged == est[p]["logged_faults"] for p in ("none", "cache"))
    exact = exact and est["none"]["faults"] == truth["none"]["faults"]
    out: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "logged_faults": logged,
        "none_and_cache_exact": exact,
        "sampled_faults_zap": est["zap"].get("sampled_faults", 0),
        "unexplained_zap": est["zap"].get("faults_unexplained", 0),
        "policies": {},
    }
    for p in POLICIES:
        out["policies"][p] = {
            m: {"truth": f(truth[p]), "sampled": f(est[p]), "error": rel(f(truth[p]), f(est[p]))}
            for m, f in METRICS.items()
        }
    return out


def validate(
    work: Path,
    seeds: tuple[int, ...],
    intervals: tuple[int, int] | None = None,
    *,
    scenarios: tuple[str, ...] = SCENARIOS,
    accesses: int | None = None,
) -> list[dict[str, Any]]:
    """Every scenario and seed, in order (``accesses``: every scenario's, else its own)."""
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for scenario in scenarios:
        for seed in seeds:
            res = one(scenario, seed, work, intervals, accesses)
            zap = res["policies"]["zap"]
            print(
                f"{scenario} seed {seed}: zap zapped-page-table faults "
                f"{zap['zapped_page_table_faults']['truth']} -> "
                f"{zap['zapped_page_table_faults']['sampled']}, pages freed "
                f"{zap['pages_freed']['truth']} -> {zap['pages_freed']['sampled']}, none/cache "
                f"exact: {res['none_and_cache_exact']} ({res['seconds']} s)",
                flush=True,
            )
            results.append(res)
    return results


def _cell(m: dict[str, Any]) -> str:
    truth, est, err = m["truth"], m["sampled"], m["error"]
    if truth is None and est is None:
        return "undefined"
    if err is None:
        shown = [f"{x:,.0f}" if isinstance(x, (int, float)) else "undefined" for x in (truth, est)]
        return f"{shown[0]} -> {shown[1]}"
    return f"{100 * err:+.0f}%"


def table(results: list[dict[str, Any]]) -> str:
    """The README's table: relative error of T' against T, per scenario, seed and policy."""
    head = (
        "| scenario | seed | policy | zapped-page-table faults | cache-eviction faults | "
        "pages freed | stall per freed page |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in results:
        for p in POLICIES:
            cells = [_cell(r["policies"][p][m]) for m in METRICS]
            lines.append(f"| {r['scenario']} | {r['seed']} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SPEED_SCENARIO = """
[scenario]
name = "damon-speed"
description = "One 16 GiB, 8-vCPU shadow_direct guest for 10 minutes under periodic kswapd"
seed = 1
duration_s = 600.0
accesses = {accesses}

[[vm]]
name = "big"
vcpus = 8
mmu_mode = "shadow_direct"
memslots = [
  {{ gpa_start = 0, size = "3GiB", backing = "4k" }},
  {{ gpa_start = "4GiB", size = "13GiB", backing = "4k" }},
]

[[vm.workload]]
kind = "zipf"
rate = 20_000
footprint = "1GiB"
hot_pages = 2_048
exponent = 0.9

[[pressure]]
kind = "kswapd"
start_s = 60.0
end_s = 540.0
interval_ms = 500
min_priority = 1
passes_per_priority = 4

[[pressure]]
kind = "drop_caches"
at_s = [120.0, 300.0, 480.0]
repeats = 4
pass_interval_us = 2000
"""


def _wall(*args: str) -> float:
    started = time.perf_counter()
    _replay(*args)
    return time.perf_counter() - started


def speed(work: Path, accesses: int) -> dict[str, Any]:
    """Replay time of a faults+sampled trace against the all-accesses trace it came from."""
    import pyarrow.parquet as pq

    work.mkdir(parents=True, exist_ok=True)
    scenario = work / "damon-speed.toml"
    scenario.write_text(SPEED_SCENARIO.format(accesses=accesses))
    truth, log, damo = work / "t.parquet", work / "none.txt", work / "d.damo"
    sampled = work / "s.parquet"
    timings = {"synth_s": _wall("synth", str(scenario), "-o", str(truth), "--force")}
    timings["render_none_s"] = _wall(
        "synth", str(scenario), "--as", "ftrace", "--faults-under", "none", "-o", str(log),
        "--force",
    )  # fmt: skip
    timings["render_damon_s"] = _wall(
        "synth", str(scenario), "--as", "damon", "--damon-format", "json_compressed",
        "-o", str(damo), "--force",
    )  # fmt: skip
    timings["convert_s"] = _wall(
        "convert", str(log), str(damo), "--vm-config", f"{log}.vms.toml", "-o", str(sampled),
        "--force",
    )  # fmt: skip
    timings["replay_all_accesses_s"] = _wall("run", str(truth), "-o", str(work / "rt"), "--force")
    timings["replay_sampled_s"] = _wall("run", str(sampled), "-o", str(work / "rs"), "--force")
    rows_t, rows_s = pq.read_metadata(truth).num_rows, pq.read_metadata(sampled).num_rows
    table = pq.read_table(sampled, columns=["event"]).column("event").to_pylist()
    return {
        "accesses": accesses,
        "all_accesses_rows": rows_t,
        "sampled_rows": rows_s,
        "region_rows": sum(1 for e in table if e == "region"),
        "all_accesses_bytes": truth.stat().st_size,
        "sampled_bytes": sampled.stat().st_size,
        **{k: round(v, 2) for k, v in timings.items()},
        "ratio": round(timings["replay_sampled_s"] / timings["replay_all_accesses_s"], 2),
    }


def compact_table(results: list[dict[str, Any]]) -> str:
    """The README's table: per scenario and policy, each seed's error, ``/``-separated."""
    head = (
        "| scenario | policy | zapped-page-table faults | cache-eviction faults | pages freed | "
        "stall per freed page |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    for scenario in scenarios:
        runs = [r for r in results if r["scenario"] == scenario]
        for p in POLICIES:
            cells = [" / ".join(_cell(r["policies"][p][m]) for r in runs) for m in METRICS]
            lines.append(f"| {scenario} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
