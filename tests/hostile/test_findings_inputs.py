"""Issue 12, the findings about what users hand the tool: items 9 (run folders), 11 (numbers in
options, scenarios and cost files), 12 (names) and 16 (unreadable files)."""

from __future__ import annotations

import json
import shutil
import tomllib
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.hostile.inputs import footer, sample_table, trace_bytes
from tests.hostile.runner import LOGS, SCENARIOS, Sandbox

if TYPE_CHECKING:
    from pathlib import Path

QUICK = (SCENARIOS / "quick.toml").read_text()


@pytest.fixture(scope="module")
def other_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zap run of another trace (the sample's first 20,000 rows)."""
    box = Sandbox(tmp_path_factory.mktemp("other"))
    box.put("other.parquet", trace_bytes(sample_table().slice(0, 20_000)))
    box.run("run", "other.parquet", "--policy", "zap", "-o", "runs", outputs={"runs": "runs"})
    return box.path / "runs" / "zap"


# -- item 9: diff and report trust the run folder -------------------------------------------------
@pytest.mark.xfail(
    strict=True, reason="issue 12 item 9: a run file's replay.run stamp is never checked"
)
@pytest.mark.parametrize("name", ["faults.parquet", "scans.parquet", "timeline.parquet"])
def test_item9_a_file_of_another_traces_run(
    sandbox: Sandbox, small_runs: Path, other_run: Path, name: str
) -> None:
    sandbox.copy(small_runs, "runs")
    shutil.copyfile(other_run / name, sandbox.path / "runs" / "cache" / name)
    got = sandbox.run("diff", "runs/zap", "runs/cache")
    assert got.returncode == 1, "a run whose files come from two traces is not a run"
    assert name in got.error_line


def _summary_edit(key: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        if key == "totals as a list":
            doc["totals"] = list(doc["totals"].values())
        elif key == "trace as a string":
            doc["trace"] = "t.parquet"
        elif key == "per-VM values as numbers":
            doc["per_vm"] = dict.fromkeys(doc["per_vm"], 5)

    return edit


SUMMARY_DAMAGE = [
    ("diff", "totals as a list"),
    ("diff", "trace as a string"),
    ("diff", "per-VM values as numbers"),
    ("report", "totals as a list"),
    ("report", "trace as a string"),
]
"""(command, damage): report draws no per-VM figure, so per-VM values are diff's alone."""


@pytest.mark.xfail(strict=True, reason="issue 12 item 9: summary.json of the wrong shape")
@pytest.mark.parametrize(("command", "damage"), SUMMARY_DAMAGE)
def test_item9_summary_of_the_wrong_shape(
    sandbox: Sandbox, small_runs: Path, damage: str, command: str
) -> None:
    sandbox.copy(small_runs, "runs")
    path = sandbox.path / "runs" / "cache" / "summary.json"
    doc = json.loads(path.read_text())
    _summary_edit(damage)(doc)
    path.write_text(json.dumps(doc))
    args = ["runs/zap", "runs/cache"] if command == "diff" else ["runs", "-o", "r.html"]
    got = sandbox.run(command, *args)
    assert got.returncode == 1
    assert "summary.json" in got.error_line


@pytest.mark.xfail(strict=True, reason="issue 12 item 9: a trace placed as vcpu_cache.parquet")
def test_item9_trace_placed_as_a_run_file(
    sandbox: Sandbox, small_runs: Path, small_trace: Path
) -> None:
    sandbox.copy(small_runs, "runs")
    shutil.copyfile(small_trace, sandbox.path / "runs" / "zap" / "vcpu_cache.parquet")
    got = sandbox.run("report", "runs/zap", "-o", "r.html")
    assert got.returncode == 1
    assert "vcpu_cache.parquet" in got.error_line


# -- item 11: numbers not range-checked -----------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="issue 12 item 11: synth --duration nan/inf: traceback")
@pytest.mark.parametrize("duration", ["nan", "inf"])
def test_item11_synth_duration_not_finite(sandbox: Sandbox, duration: str) -> None:
    got = sandbox.run("synth", "quick", "--duration", duration, "-o", "t.parquet")
    assert got.returncode == 1
    assert "--duration" in got.error_line


def _synth(sandbox: Sandbox, text: str, *extra: str) -> Any:
    sandbox.put("s.toml", text)
    return sandbox.run(
        "synth",
        "s.toml",
        "--accesses",
        "2000",
        "-o",
        "t.parquet",
        *extra,
        outputs={"t.parquet": "trace"},
    )


def _accesses(path: Path) -> Any:
    table = pq.read_table(path, columns=["t_ns", "event"])
    return table.filter(pc.equal(table.column("event"), "access"))


def test_item11_rate_inf(sandbox: Sandbox) -> None:
    got = _synth(sandbox, QUICK.replace("rate = 25_000", "rate = inf", 1))
    assert got.returncode == 1
    assert "rate" in got.error_line


def test_item11_exponent_nan(sandbox: Sandbox) -> None:
    got = _synth(sandbox, QUICK.replace("exponent = 0.9", "exponent = nan", 1))
    assert got.returncode == 1
    assert "exponent" in got.error_line


@pytest.mark.xfail(strict=True, reason="issue 12 item 11: rate = 1e308 gives 2 accesses, exit 0")
def test_item11_rate_1e308(sandbox: Sandbox) -> None:
    """A rate no arithmetic keeps exact: refused, or the trace has the accesses asked for."""
    got = _synth(sandbox, QUICK.replace("rate = 25_000", "rate = 1e308", 1))
    if got.returncode == 0:
        assert _accesses(sandbox.path / "t.parquet").num_rows == 2000


@pytest.mark.xfail(strict=True, reason="issue 12 item 11: duration_s = 1e12 gives t_ns INT64_MIN")
@pytest.mark.parametrize("where", ["scenario", "--duration"])
def test_item11_duration_1e12(sandbox: Sandbox, where: str) -> None:
    if where == "scenario":
        got = _synth(sandbox, QUICK.replace("duration_s = 4.0", "duration_s = 1e12", 1))
    else:
        got = _synth(sandbox, QUICK, "--duration", "1e12")
    if got.returncode == 0:
        t_ns = pq.read_table(sandbox.path / "t.parquet", columns=["t_ns"]).column("t_ns")
        assert pc.min(t_ns).as_py() >= 0, "time wrapped past int64"


@pytest.mark.parametrize("what", ["scenario", "costs"])
def test_item11_binary_toml(sandbox: Sandbox, small_trace: Path, what: str) -> None:
    sandbox.put("bin.toml", bytes(range(256)) * 4)
    sandbox.copy(small_trace, "t.parquet")
    if what == "scenario":
        got = sandbox.run("synth", "bin.toml", "-o", "t2.parquet")
    else:
        got = sandbox.run("run", "t.parquet", "--costs", "bin.toml", "-o", "runs")
    assert got.returncode == 1
    assert "bin.toml" in got.error_line


@pytest.mark.parametrize("value", [str(10**30), str(2**63 - 1)])
def test_item11_costs_beyond_exact_arithmetic(
    sandbox: Sandbox, small_trace: Path, value: str
) -> None:
    sandbox.copy(small_trace, "t.parquet")
    sandbox.put("costs.toml", f"fault_base_ns = {value}\n")
    got = sandbox.run(
        "run",
        "t.parquet",
        "--costs",
        "costs.toml",
        "--policy",
        "zap",
        "-o",
        "runs",
        outputs={"runs": "runs"},
    )
    if got.returncode == 0:
        est = pq.read_table(sandbox.path / "runs" / "zap" / "faults.parquet").column("est_ns")
        assert pc.min(est).as_py() >= 0, "estimated costs wrapped past int64"
    else:
        assert "costs.toml" in got.error_line


@pytest.mark.parametrize("value", ["1e30", "nan", "-5", '"fast"'])
def test_item11_costs_that_are_not_whole_numbers(
    sandbox: Sandbox, small_trace: Path, value: str
) -> None:
    sandbox.copy(small_trace, "t.parquet")
    sandbox.put("costs.toml", f"fault_base_ns = {value}\n")
    got = sandbox.run("run", "t.parquet", "--costs", "costs.toml", "-o", "runs")
    assert got.returncode == 1
    assert "fault_base_ns" in got.error_line


# -- item 12: names are interpreted ---------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="issue 12 item 12: file names are read as rich markup")
@pytest.mark.parametrize("name", ["a[/]b.parquet", "x[red]y.parquet", "[bold]z.parquet"])
def test_item12_file_names_shown_as_they_are(sandbox: Sandbox, name: str) -> None:
    sandbox.put(name, trace_bytes())
    got = sandbox.run("inspect", name)
    assert name in got.stdout


@pytest.mark.xfail(strict=True, reason="issue 12 item 12: VM names are read as rich markup")
def test_item12_vm_name_with_markup(sandbox: Sandbox) -> None:
    doc = footer()
    doc["vms"][0]["name"] = "a[/]b[red]"
    sandbox.put("t.parquet", trace_bytes(footer_doc=doc))
    got = sandbox.run("inspect", "t.parquet")
    assert "a[/]b[red]" in got.stdout


@pytest.mark.xfail(strict=True, reason="issue 12 item 12: escape sequences reach the terminal")
def test_item12_vm_name_with_escape_sequences(sandbox: Sandbox) -> None:
    doc = footer()
    doc["vms"][0]["name"] = "evil\x1b]0;owned\x07\x1b[31mred\x1b[0m"
    sandbox.put("t.parquet", trace_bytes(footer_doc=doc))
    got = sandbox.run("inspect", "t.parquet")
    assert "\x1b" not in got.stdout
    assert "\x07" not in got.stdout


def test_item12_report_of_a_folder_named_like_mathtext(sandbox: Sandbox, small_trace: Path) -> None:
    sandbox.copy(small_trace, "t.parquet")
    sandbox.run("run", "t.parquet", "-o", "m$\\bad$", "--report", outputs={"m$\\bad$": "runs"})
    assert (sandbox.path / "m$\\bad$" / "report.html").is_file()


@pytest.mark.xfail(strict=True, reason="issue 12 item 12: synth --as writes VM names unescaped")
def test_item12_synth_as_escapes_vm_names_in_its_toml(sandbox: Sandbox) -> None:
    name = 'we"b\\x'
    sandbox.put("s.toml", QUICK.replace('name = "tdp"', 'name = "we\\"b\\\\x"', 1))
    sandbox.run(
        "synth",
        "s.toml",
        "--accesses",
        "1000",
        "--as",
        "ftrace",
        "-o",
        "log.txt",
        outputs={"log.txt": "log", "log.txt.vms.toml": "file"},
    )
    config = tomllib.loads((sandbox.path / "log.txt.vms.toml").read_text())
    assert config["vm"][0]["name"] == name


# -- item 16: an unreadable file is a usage error -------------------------------------------------
@pytest.fixture
def plain_sandbox(tmp_path: Path) -> Any:
    """A sandbox whose commands cannot read what permissions forbid (as root: no override)."""
    with Sandbox(tmp_path, plain_user=True) as box:
        yield box


UNREADABLE = {
    "inspect TRACE": (["inspect", "t.parquet"], "t.parquet"),
    "run TRACE": (["run", "t.parquet", "-o", "runs"], "t.parquet"),
    "run --costs": (["run", "ok.parquet", "--costs", "costs.toml", "-o", "runs"], "costs.toml"),
    "diff RUN": (["diff", "runs/zap", "runs/none"], "zap"),
    "report RUN": (["report", "runs/zap", "-o", "r.html"], "zap"),
    "convert --vm-config": (
        ["convert", "l.txt", "--vm-config", "vms.toml", "-o", "c.parquet"],
        "vms.toml",
    ),
}


@pytest.mark.xfail(strict=True, reason="issue 12 item 16: typer's readable check: exit 2 and a box")
@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_item16_unreadable_input(
    plain_sandbox: Sandbox, small_trace: Path, small_runs: Path, case: str
) -> None:
    args, locked = UNREADABLE[case]
    plain_sandbox.copy(small_trace, "t.parquet")
    plain_sandbox.copy(small_trace, "ok.parquet")
    plain_sandbox.put("costs.toml", "fault_base_ns = 1000\n")
    plain_sandbox.copy(small_runs, "runs")
    plain_sandbox.copy(LOGS / "public-kvm-page-fault-lkml-2022.txt", "l.txt")
    plain_sandbox.put("vms.toml", '[[vm]]\nname = "a"\ntgid = 4145\n')
    target = plain_sandbox.path / (f"runs/{locked}" if locked == "zap" else locked)
    target.chmod(0)
    try:
        got = plain_sandbox.run(*args)
    finally:
        target.chmod(0o755)
    assert got.returncode == 1
    assert locked in got.error_line
    assert "ermission" in got.error_line


@pytest.mark.parametrize("case", ["convert", "synth"])
def test_item16_unreadable_input_of_str_arguments(plain_sandbox: Sandbox, case: str) -> None:
    """Commands that take their files as text already say "permission denied" in one line."""
    log = plain_sandbox.copy(LOGS / "public-kvm-page-fault-lkml-2022.txt", "l.txt")
    scenario = plain_sandbox.copy(SCENARIOS / "quick.toml", "s.toml")
    locked, args = {
        "convert": (log, ["convert", "l.txt", "-o", "t.parquet"]),
        "synth": (scenario, ["synth", "s.toml", "-o", "t.parquet"]),
    }[case]
    locked.chmod(0)
    got = plain_sandbox.run(*args)
    assert got.returncode == 1
    assert locked.name in got.error_line
