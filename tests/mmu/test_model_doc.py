"""replay/mmu/MODEL.md stays the truth the code cites.

Every rule, section or appendix number a comment, docstring or test name cites is defined in
MODEL.md; every rule has at least one test, named in MODEL.md's table "Where each rule lives",
and that test exists; every function the table names can be imported; and every document a
comment names can be found in the repository.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "replay" / "mmu" / "MODEL.md"

# The rules the model must define: 1 to 35, and rule 3's parts 3a to 3e.
EXPECTED_RULES = {str(n) for n in range(1, 36)} | {f"3{c}" for c in "abcde"}
EXPECTED_SECTIONS = {str(n) for n in range(12)}

_SECTION_HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)
_RULE_HEADING = re.compile(r"^#{3,4} Rule (\d+[a-e]?):", re.MULTILINE)
_APPENDIX_HEADING = re.compile(r"^#{2,3} (?:Appendix )?(A(?:\.\d+)?)[. ]", re.MULTILINE)

# "rule 13", "Rules 13 and 26", "rules 1, 2, 3b", "rules 5-8", "rule 16/23", "rules 3d, 20",
# "Rule 9 (and 24)", "Rule 12 (21, 23)".
_ID = r"\d+[a-e]?"
_SEP = r"\s*(,|and|or|/|-|\(and|\()\s*"
_RULE_CITE = re.compile(rf"\b[Rr]ules?\s+({_ID}(?:{_SEP}{_ID})*)")
_SECTION_CITE = re.compile(r"\b[Ss]ections?\s+(\d+(?:\.\d+)*)")
_APPENDIX_CITE = re.compile(r"\b[Aa]ppendix\s+(A(?:\.\d+)?)")
_TEST_NAME_CITE = re.compile(rf"\btest_rule_({_ID}(?:_and_{_ID})*)")
_DOC_NAME = re.compile(r"[\w./-]*\b[\w-]+\.md\b")

# Documents that live outside the repository: a reader of the clone cannot follow a citation of
# them, so none may be cited (the project's own account is MODEL.md, ENGINE.md and
# traces/logs/README.md).
_OUTSIDE = ("KERNEL-NOTES", "shared/spec", "DESIGN.md", "STYLE.md", "ECOSYSTEM.md", "ANCHORS.md")

PENDING_OUTSIDE_CITATIONS: set[tuple[str, str]] = set()
"""Citations of documents outside the repository still to be pointed inside it: none."""


@cache
def model_text() -> str:
    return MODEL.read_text(encoding="utf-8")


@cache
def defined() -> dict[str, set[str]]:
    text = model_text()
    return {
        "rule": set(_RULE_HEADING.findall(text)),
        "section": set(_SECTION_HEADING.findall(text)),
        "appendix": set(_APPENDIX_HEADING.findall(text)),
    }


def expand(listed: str) -> list[str]:
    """The rule ids of a cited list: "13 and 26" -> 13, 26; "1-4" -> 1..4; "3a-3c" -> 3a..3c."""
    ids: list[str] = []
    parts = re.split(_SEP, listed)
    i = 0
    while i < len(parts):
        ids.append(parts[i])
        if i + 2 < len(parts) and parts[i + 1] == "-":
            lo, hi = parts[i], parts[i + 2]
            if lo.isdigit() and hi.isdigit():
                ids.extend(str(n) for n in range(int(lo) + 1, int(hi) + 1))
            elif lo[:-1] == hi[:-1] and not lo[-1].isdigit():
                ids.extend(lo[:-1] + chr(c) for c in range(ord(lo[-1]) + 1, ord(hi[-1]) + 1))
            else:
                ids.append(hi)
            i += 4  # past the range's end and the separator after it
            continue
        i += 2
    return ids


def cited_files() -> list[Path]:
    """Files whose comments, docstrings and texts may cite the model."""
    files = [*(ROOT / "replay").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    files += [*(ROOT / "scripts").glob("*.py"), *(ROOT / "schemas").glob("*")]
    files += [*(ROOT / "traces" / "scenarios").glob("*")]
    return sorted(f for f in files if f.is_file() and f != Path(__file__))


def citations(path: Path) -> list[tuple[str, str, int]]:
    """(kind, id, line) of every rule, section and appendix number the file cites."""
    out: list[tuple[str, str, int]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for m in _RULE_CITE.finditer(line):
            out.extend(("rule", rule, lineno) for rule in expand(m.group(1)))
        for m in _TEST_NAME_CITE.finditer(line):
            out.extend(("rule", rule, lineno) for rule in m.group(1).split("_and_"))
        out.extend(("section", m.group(1), lineno) for m in _SECTION_CITE.finditer(line))
        out.extend(("appendix", m.group(1), lineno) for m in _APPENDIX_CITE.finditer(line))
    return out


def test_model_defines_every_section_and_rule() -> None:
    assert defined()["section"] == EXPECTED_SECTIONS
    assert defined()["rule"] == EXPECTED_RULES
    headings = _RULE_HEADING.findall(model_text())
    assert len(headings) == len(set(headings)), "a rule is defined twice"


def test_every_cited_number_is_defined() -> None:
    known = defined()
    missing = [
        f"{path.relative_to(ROOT)}:{line}: {kind} {ident}"
        for path in cited_files()
        for kind, ident, line in citations(path)
        if ident not in known[kind]
    ]
    assert not missing, "cited but not defined in replay/mmu/MODEL.md:\n" + "\n".join(missing)


def test_the_citation_parser_reads_every_form() -> None:
    assert expand("13 and 26") == ["13", "26"]
    assert expand("1, 2, 3b") == ["1", "2", "3b"]
    assert expand("1-4") == ["1", "2", "3", "4"]
    assert expand("3a-3c") == ["3a", "3b", "3c"]
    assert expand("16/23") == ["16", "23"]
    assert expand("9 (and 24") == ["9", "24"]
    assert expand("12 (21, 23") == ["12", "21", "23"]
    assert expand("1-4 (and 5-8") == ["1", "2", "3", "4", "5", "6", "7", "8"]
    # The reference engine cites "Rule 3a", "Rules 13 and 26", "rule 16/23", "section 2".
    cited = citations(ROOT / "replay" / "mmu" / "reference.py")
    rules = {ident for kind, ident, _ in cited if kind == "rule"}
    assert {"1", "2", "3a", "3b", "3d", "3e", "4", "13", "26", "16", "23"} <= rules
    assert {ident for kind, ident, _ in cited if kind == "section"} >= {"0", "2", "3", "5", "6"}


@cache
def table() -> dict[str, list[list[str]]]:
    """MODEL.md's "Where each rule lives": rule id -> its cells, each a list of names."""
    text = model_text()
    start = text.index("## Where each rule lives")
    end = text.index("\n## ", start + 1)
    rows: dict[str, list[list[str]]] = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.fullmatch(_ID, cells[0]):
            continue
        assert cells[0] not in rows, f"rule {cells[0]} has two rows"
        rows[cells[0]] = [re.findall(r"`([^`]+)`", c) for c in cells[1:]]
    return rows


def test_the_table_has_one_row_per_rule_and_every_rule_a_test() -> None:
    assert set(table()) == EXPECTED_RULES
    untested = [rule for rule, cells in table().items() if not cells[3]]
    assert not untested, f"rules without a test in MODEL.md's table: {untested}"


def _all_tests() -> list[str]:
    return sorted({t for cells in table().values() for t in cells[3]})


@cache
def _functions_defined_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("test_id", _all_tests())
def test_every_named_test_exists(test_id: str) -> None:
    file, sep, name = test_id.partition("::")
    assert sep, f"{test_id}: name a test as tests/<file>.py::<function>"
    path = ROOT / file
    assert path.is_file(), f"{test_id}: no file {file}"
    assert name in _functions_defined_in(path), f"{test_id}: {file} defines no {name}"


def resolve(dotted: str) -> object:
    """Import the longest importable prefix of ``dotted``, then look the rest up attribute by
    attribute."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize(
    "dotted", sorted({n for cells in table().values() for cell in cells[:3] for n in cell})
)
def test_every_named_function_exists(dotted: str) -> None:
    assert dotted.startswith("replay."), f"{dotted}: name code by its dotted import path"
    try:
        resolve(dotted)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"MODEL.md names {dotted}, which does not exist ({exc})")


@cache
def _documents() -> frozenset[str]:
    """Names of the repository's Markdown files (outside hidden folders and run outputs)."""
    names: set[str] = set()
    for _, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("runs", "__pycache__")]
        names.update(f for f in files if f.endswith(".md"))
    return frozenset(names)


def _doc_exists(name: str, near: Path) -> bool:
    if (near.parent / name).is_file() or (ROOT / name).is_file():
        return True
    return Path(name).name in _documents()


def test_every_document_a_comment_names_is_in_the_repository() -> None:
    found: set[tuple[str, str]] = set()
    unresolved: list[str] = []
    for path in cited_files():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        names = set(_DOC_NAME.findall(text))
        unresolved.extend(f"{rel}: {n}" for n in names if not _doc_exists(n, path))
        found |= {(rel, marker) for marker in _OUTSIDE if marker in text}
    pending = {f"{file}: {marker}.md" for file, marker in PENDING_OUTSIDE_CITATIONS}
    assert sorted(set(unresolved) - pending) == [], "documents not in the repository"
    assert found == PENDING_OUTSIDE_CITATIONS, (
        "citations of documents outside the repository changed; cite replay/mmu/MODEL.md, "
        "replay/mmu/ENGINE.md or traces/logs/README.md, and keep PENDING_OUTSIDE_CITATIONS exact"
    )
