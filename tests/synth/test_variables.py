"""Scenario variables: ``[variables]``, ``${expr}`` in values, ``--set`` overrides, their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from replay.cli import app
from replay.errors import ScenarioError
from replay.synth import generate, load_scenario
from replay.synth.workload import vcpu_streams
from tests.synth.helpers import read_all

BASE = """
[variables]
{variables}

[scenario]
name = "v"
duration_s = {duration}

[[vm]]
name = "vm"
vcpus = {vcpus}
memslots = [{{ gpa_start = 0, size = {size} }}]

[[vm.workload]]
kind = "sequential"
rate = 1000
partition = {partition}
"""


def write(tmp_path: Path, **fields: str) -> Path:
    values = {
        "variables": 'n = 2\nmem = "1MiB"',
        "duration": '"${n / 4}"',
        "vcpus": '"${n}"',
        "size": '"${n * mem}"',
        "partition": "false",
    }
    values.update(fields)
    path = tmp_path / "v.toml"
    path.write_text(BASE.format(**values))
    return path


def test_values_follow_the_variables_and_keep_their_types(tmp_path: Path) -> None:
    """n = 2, mem = 1 MiB: vcpus 2 (an integer), duration 2 / 4 = 0.5 s, RAM 2 MiB."""
    sc = load_scenario(str(write(tmp_path)))
    assert sc.vms[0].vcpus == 2
    assert sc.duration_s == 0.5
    assert sc.vms[0].memslots[0].size == 2 << 20


def test_set_overrides_and_later_variables_follow(tmp_path: Path) -> None:
    """--set n=3 gives 3 vCPUs, 3 MiB and 0.75 s; a derived variable sees the new n."""
    path = write(tmp_path, variables='n = 2\nmem = "1MiB"\nram = "${n * mem}"', size='"${ram}"')
    sc = load_scenario(str(path), variables={"n": "3", "mem": "2MiB"})
    assert (sc.vms[0].vcpus, sc.duration_s) == (3, 0.75)
    assert sc.vms[0].memslots[0].size == 6 << 20


def test_embedded_references_become_text_read_as_the_key_expects(tmp_path: Path) -> None:
    """``"${n}MiB"`` with n = 2 is the string "2MiB", then read as a size: 2 MiB."""
    sc = load_scenario(str(write(tmp_path, size='"${n}MiB"')))
    assert sc.vms[0].memslots[0].size == 2 << 20
    sc = load_scenario(str(write(tmp_path, size='"${n / 2}GiB"')))  # 1.0 reads as "1GiB"
    assert sc.vms[0].memslots[0].size == 1 << 30


def test_a_scenario_without_variables_reads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, variables="", duration="1.0", vcpus="1", size='"1MiB"')
    sc = load_scenario(str(path))
    assert (sc.vms[0].vcpus, sc.duration_s) == (1, 1.0)


@pytest.mark.parametrize(
    ("fields", "overrides", "message"),
    [
        ({"vcpus": '"${m}"'}, {}, "[[vm]] #1 vcpus: ${m}: unknown variable 'm' (known: mem, n)"),
        ({"vcpus": '"${n +}"'}, {}, "${n +} is not an expression"),
        ({"vcpus": '"${__import__(1)}"'}, {}, "'__import__(1)' is not allowed"),
        ({"vcpus": '"${n.real}"'}, {}, "is not allowed"),
        ({"vcpus": '"${n / 0}"'}, {}, "${n / 0} divides by zero"),
        ({"vcpus": '"${9 ** 9 ** 9}"'}, {}, "exponent must be within -64..64"),
        ({"vcpus": '"${2 ** 64 * 2}"'}, {}, "beyond 2**64"),
        ({"vcpus": '"${n"'}, {}, "without its closing }"),
        ({"vcpus": '"${' + "1+" * 150 + '1}"'}, {}, "longer than 200 characters"),
        ({"variables": "n = true"}, {}, "[variables]: n must be a number"),
        ({"variables": 'n = "${1}"\nmem = "lots"'}, {}, "'lots' is not a size"),
        ({"variables": "2n = 1"}, {}, "'2n' is not a variable name"),
        ({"variables": 'n = "${m}"\nm = 1'}, {}, "unknown variable 'm' (known: none"),
        ({}, {"k": "1"}, "--set k: the scenario has no variable 'k' (it has: n, mem)"),
        ({}, {"mem": "many"}, "command line: --set mem = 'many' is not a size"),
        ({"duration": "1.0"}, {"n": "0"}, "vcpus = 0 is out of range"),
        ({"duration": "1.0"}, {"n": "1.5"}, "vcpus must be a whole number, not 1.5"),
    ],
)
def test_errors_name_the_file_the_place_and_the_fix(
    tmp_path: Path, fields: dict[str, str], overrides: dict[str, str], message: str
) -> None:
    path = write(tmp_path, **fields)
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(path), variables=overrides)
    text = str(err.value)
    assert text.startswith(f"scenario {path}: ")
    assert message in text
    assert "\n" not in text


def test_partition_gives_each_vcpu_its_own_slice_in_id_order(tmp_path: Path) -> None:
    """3 vCPUs over 3 MiB = 768 pages, partitioned: 256 pages each, vCPU i from page 256 i.

    The sequential walk of 0.5 s at 1000/s is 500 accesses: pages 0..255 of the slice, then
    0..243 again (500 - 256 = 244), so each vCPU touches exactly its 256 gfns.
    """
    path = write(tmp_path, variables="n = 3", size='"${n}MiB"', partition="true")
    path.write_text(path.read_text().replace('"${n / 4}"', "0.5"))
    sc = load_scenario(str(path))
    out = tmp_path / "t.parquet"
    generate(sc, out)
    _, cols = read_all(out)
    gfn = cols["gpa"] >> 12
    for v in range(3):
        mine = gfn[cols["vcpu"] == v]
        assert len(mine) == 500
        assert mine.min() == 256 * v
        assert mine.max() == 256 * v + 255
        assert list(mine[:3]) == [256 * v, 256 * v + 1, 256 * v + 2]
        assert mine[256] == 256 * v  # the second pass starts over


def test_partition_too_small_for_its_vcpus_is_a_scenario_error(tmp_path: Path) -> None:
    import numpy as np

    sc = load_scenario(str(write(tmp_path, variables="n = 2", size="8192", partition="true")))
    vm = sc.vms[0]
    bigger = type(vm)(**{**vm.__dict__, "vcpus": 3})  # 2 pages cannot be cut for 3 vCPUs
    rngs = [np.random.default_rng(i) for i in range(3)]
    with pytest.raises(ScenarioError, match="cannot give each of its 3 vCPUs a page"):
        vcpu_streams(0, bigger, 10**9, rngs)


def test_cli_set(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write(tmp_path)
    out = tmp_path / "o.parquet"
    ok = runner.invoke(app, ["synth", str(path), "-o", str(out), "--set", "n=4", "--json"])
    assert ok.exit_code == 0, ok.output
    trace, _ = read_all(out)
    assert trace.meta.vms[0].vcpus == 4
    for bad, message in [
        (["--set", "n"], "--set 'n': write NAME=VALUE"),
        (["--set", "x=1"], "no variable 'x'"),
    ]:
        res = runner.invoke(app, ["synth", str(path), "-o", str(tmp_path / "b.parquet"), *bad])
        assert res.exit_code == 1
        assert message in res.output
        assert not (tmp_path / "b.parquet").exists()


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3) -> str:
    """Integer arithmetic over the language's operators, small enough never to pass 2**64.

    Operands are at most 100 in size and the depth 3, so no step exceeds 100**8 = 10**16.
    """
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["a", "b", str(draw(st.integers(0, 100)))]))
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    left, right = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    if op in ("//", "%"):
        right = str(draw(st.integers(1, 97)))  # a divisor that is never 0
    return f"({left}) {op} ({right})" if draw(st.booleans()) else f"-({left}) {op} ({right})"


@settings(max_examples=200, deadline=None)
@given(expressions(), st.integers(-100, 100), st.integers(-100, 100))
def test_expressions_compute_what_python_computes(expr: str, a: int, b: int) -> None:
    """Whatever the language accepts, it computes as Python's own integer arithmetic does."""
    from replay.synth.variables import substitute

    expect = eval(expr, {"__builtins__": {}}, {"a": a, "b": b})  # the oracle: plain Python
    doc = {"x": f"${{{expr}}}"}
    if len(expr) > 200:
        with pytest.raises(ScenarioError, match="longer than 200"):
            substitute(doc, {"a": a, "b": b}, ScenarioError)
        return
    assert substitute(doc, {"a": a, "b": b}, ScenarioError) == {"x": expect}
