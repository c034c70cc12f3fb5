"""The one TOML reader: every failure a user can cause, as one line naming file, key and fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from replay._toml import INT64_MAX, TomlTable, read_memslot, read_toml
from replay.errors import ReplayError


class _Err(ReplayError):
    """Stands for a caller's error class (ScenarioError, VmConfigError, ConfigError)."""


def _table(tmp_path: Path, text: str) -> TomlTable:
    path = tmp_path / "f.toml"
    path.write_text(text, encoding="utf-8")
    return read_toml(path, "test file", _Err)


def _fails(match: str) -> Any:
    """A check that the reader raises the caller's class with one line matching ``match``."""
    return pytest.raises(_Err, match=match)


def _one_line(exc: pytest.ExceptionInfo[_Err], path: Path) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"test file {path}")
    return text


# -- the file --------------------------------------------------------------------------------
def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with _fails("does not exist; check the path") as exc:
        read_toml(path, "test file", _Err)
    _one_line(exc, path)


def test_a_folder(tmp_path: Path) -> None:
    with _fails("is a folder; give the path of a .toml file") as exc:
        read_toml(tmp_path, "test file", _Err)
    _one_line(exc, tmp_path)


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.toml"
    path.write_text("a = 1\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    # Simulated: the tests may run as root, whom file modes do not stop.
    monkeypatch.setattr(Path, "read_bytes", denied)
    with _fails(r"cannot be read \(permission denied\); check its permissions") as exc:
        read_toml(path, "test file", _Err)
    _one_line(exc, path)


def test_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_bytes(b"PAR1\x00\x15\x04\x00a = 1\n")
    with _fails("is a binary file, not TOML text") as exc:
        read_toml(path, "test file", _Err)
    _one_line(exc, path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with _fails(r"is not UTF-8 text \(byte 0xe9 at offset 11\); save it as UTF-8") as exc:
        read_toml(path, "test file", _Err)
    _one_line(exc, path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a = 1\nb = \n", "at line 2, column 5"),
        ("a = 1\n[t\n", "at line 2, column 3"),
        ('a = "open', "at the end of the file"),
    ],
)
def test_invalid_toml_names_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    with _fails(f"not valid TOML: .* {where}; fix the syntax") as exc:
        _table(tmp_path, text)
    _one_line(exc, tmp_path / "f.toml")


# -- keys ------------------------------------------------------------------------------------
def test_an_unknown_key_gets_a_suggestion_and_the_known_keys(tmp_path: Path) -> None:
    t = _table(tmp_path, "vpcus = 2\n")
    with _fails(re.escape("unknown key 'vpcus'; did you mean 'vcpus'? (known: count, vcpus)")):
        t.check_keys({"vcpus", "count"})
    with _fails(re.escape("unknown key 'vpcus' (known: zzz)")):
        t.check_keys({"zzz"})


def test_a_missing_required_key(tmp_path: Path) -> None:
    t = _table(tmp_path, "a = 1\n")
    with _fails("required key 'b' is missing"):
        t.check_keys({"a", "b"}, {"b"})
    with _fails("required key 'b' is missing"):
        t.integer("b")
    assert t.integer("b", 7) == 7


def test_keys_of_a_sub_table_are_named_by_their_dotted_path(tmp_path: Path) -> None:
    t = _table(tmp_path, "[mix]\nreed = 1\nwrite = -1\n")
    mix = t.table("mix")
    with _fails(re.escape("unknown key 'mix.reed'; did you mean 'mix.read'?")):
        mix.check_keys({"read", "write"})
    with _fails(re.escape("mix.write = -1 is out of range; it must be >= 0")):
        mix.number("write")
    with _fails("a must be a table, not 1"):
        _table(tmp_path, "a = 1\n").table("a")


def test_entries_of_arrays_of_tables_are_numbered(tmp_path: Path) -> None:
    t = _table(
        tmp_path,
        '[[vm]]\nname = "a"\n[[vm]]\nname = "b"\nvcpus = 0\n'
        "[[vm.memslots]]\nsize = 1\n[[vm.memslots]]\nsize = true\n",
    )
    first, second = t.tables("vm")
    assert first.text("name") == "a"
    with _fails(re.escape(": [[vm]] #2: vcpus = 0 is out of range; it must be 1..4")) as exc:
        second.integer("vcpus", lo=1, hi=4)
    _one_line(exc, tmp_path / "f.toml")
    slots = second.tables("memslots")
    with _fails(re.escape(": [[vm]] #2 memslots[1]: size must be a size such as 4096")):
        slots[1].size("size")
    with _fails(re.escape(": [[vm]]: give at least one [[vm]] table")):
        _table(tmp_path, "vm = []\n").tables("vm")
    with _fails("memslots must be a non-empty array of tables"):
        first.tables("memslots", [])
    assert first.tables("memslots", [], nonempty=False) == []
    with _fails(re.escape(": [[x]] #1: must be a table")):
        _table(tmp_path, "x = [1]\n").tables("x")


# -- values ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "read", "message"),
    [
        ("k = 1.5", lambda t: t.integer("k"), "k must be a whole number, not 1.5"),
        ("k = true", lambda t: t.integer("k"), "k must be a whole number, not True"),
        ('k = "3"', lambda t: t.integer("k"), "k must be a whole number, not '3'"),
        ("k = -1", lambda t: t.integer("k"), "k = -1 is out of range; it must be >= 0"),
        ("k = 9", lambda t: t.integer("k", hi=8), "k = 9 is out of range; it must be 0..8"),
        (
            f"k = {INT64_MAX}",
            lambda t: t.integer("k", hi=INT64_MAX - 1),
            f"k = {INT64_MAX} is out of range; it must be 0..{INT64_MAX - 1}",
        ),
        ("k = true", lambda t: t.number("k"), "k must be a number, not True"),
        ("k = inf", lambda t: t.number("k"), "k = inf is not a finite number; it must be >= 0"),
        ("k = nan", lambda t: t.number("k"), "k = nan is not a finite number"),
        ("k = 0", lambda t: t.number("k", strict_lo=True), "k = 0 is out of range; it must be > 0"),
        (
            "k = 2",
            lambda t: t.number("k", hi=1.0),
            "k = 2 is out of range; it must be >= 0 and <= 1",
        ),
        ('k = "-4k"', lambda t: t.size("k"), "k = '-4k' is not a size; write e.g. 4096"),
        ('k = "0xzz"', lambda t: t.size("k"), "k = '0xzz' is not a size"),
        ("k = 0", lambda t: t.size("k"), "k = 0 must be positive"),
        ("k = -1", lambda t: t.size("k", positive=False), "k = -1 must be >= 0"),
        (
            'k = "1p"',
            lambda t: t.size("k", hi=1 << 40),
            "k = '1p' is out of range; it must be below",
        ),
        ("k = [1]", lambda t: t.size("k"), 'k must be a size such as 4096 or "2GiB", not \\[1\\]'),
        ("k = 1", lambda t: t.boolean("k"), "k must be true or false"),
        ("k = 1", lambda t: t.text("k"), "k must be a string"),
        ('k = ""', lambda t: t.text("k", nonempty=True), "k must be a non-empty string"),
        ('k = "c"', lambda t: t.choice("k", ("a", "b")), "k 'c' must be one of a, b"),
        ("k = 3", lambda t: t.choice("k", ("a", "b")), "k 3 must be one of a, b"),
        ("k = 3", lambda t: t.integers("k"), "k must be a list of whole numbers, not 3"),
        ("k = [1, -2]", lambda t: t.integers("k"), "k = -2 is out of range"),
        (
            "k = []",
            lambda t: t.numbers("k", nonempty=True),
            "k must be a non-empty list of numbers",
        ),
        ("k = [1, inf]", lambda t: t.numbers("k"), "k = inf is not a finite number"),
    ],
)
def test_wrong_types_and_ranges_say_what_is_expected(
    tmp_path: Path, text: str, read: Any, message: str
) -> None:
    t = _table(tmp_path, text + "\n")
    with _fails(message) as exc:
        read(t)
    _one_line(exc, tmp_path / "f.toml")


def test_integers_beyond_64_bits_are_refused_by_default(tmp_path: Path) -> None:
    """tomllib reads any integer; the numbers feed 64-bit arithmetic."""
    t = _table(tmp_path, f"k = {INT64_MAX + 1}\nn = {INT64_MAX}\ns = {INT64_MAX + 1}\n")
    with _fails(f"k = {INT64_MAX + 1} is out of range; it must be below 2\\*\\*63"):
        t.integer("k")
    assert t.integer("n") == INT64_MAX
    with _fails("s = .* is out of range; it must be below 2\\*\\*63"):
        t.size("s")


def test_good_values_are_read(tmp_path: Path) -> None:
    t = _table(
        tmp_path,
        'i = 3\nf = 2.5\nw = 2\ns = "1.5GiB"\nh = "0x1000"\nb = false\nc = "b"\n'
        "l = [3, 4]\nm = [0.5, 1]\n",
    )
    assert t.integer("i", lo=3, hi=3) == 3
    assert t.number("f") == 2.5
    assert t.number("w") == 2.0
    assert t.size("s") == 3 << 29
    assert t.size("h") == 0x1000
    assert t.boolean("b") is False
    assert t.choice("c", ("a", "b")) == "b"
    assert t.integers("l", lo=3, hi=4) == (3, 4)
    assert t.numbers("m", hi=1.0) == (0.5, 1.0)
    assert t.number("absent", 0.25) == 0.25
    assert "i" in t
    assert "absent" not in t


def test_a_memslot_is_checked_like_a_traces(tmp_path: Path) -> None:
    t = _table(
        tmp_path,
        '[[s]]\ngpa_start = "4GiB"\nsize = "2MiB"\nbacking = "2m"\nhva_start = 5\n'
        '[[s]]\ngpa_start = 0\nsize = 12345\n[[s]]\ngpa_start = 0\nsize = 4096\nbacking = "8k"\n',
    )
    good, odd, unknown = t.tables("s")
    slot = read_memslot(good, extra_keys={"hva_start"})
    assert (slot.gpa_start, slot.size, slot.backing, slot.dirty_log) == (
        4 << 30,
        2 << 20,
        "2m",
        False,
    )
    with _fails(re.escape("unknown key 'hva_start'")):
        read_memslot(good)
    with _fails(re.escape(": [[s]] #2: size 12345 must be a positive multiple of 4096")) as exc:
        read_memslot(odd)
    _one_line(exc, tmp_path / "f.toml")
    with _fails("backing '8k' must be one of 4k, 2m, 1g"):
        read_memslot(unknown)
