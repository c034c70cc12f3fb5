"""Read a run directory back: the one place that checks a folder is a run this version reads.

``replay diff`` and ``replay report`` both start here, so a folder that is not a run, a run of
a newer schema or a damaged ``summary.json`` gets the same one-line error from either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from replay.errors import InputFileError
from replay.run.schema import RUN_FILES, RUN_KEY, RUN_SCHEMA, RUN_SCHEMA_VERSION, SUMMARY_FILE
from replay.run.shape import ShapeError, check_summary

if TYPE_CHECKING:
    from pathlib import Path

REQUIRED_KEYS = ("policy", "engine", "trace", "config", "totals", "per_vm", "per_vcpu")


class RunFormatError(InputFileError):
    """A folder is not a run, or a run this version cannot read."""


@dataclass(frozen=True)
class RunDir:
    """One policy's run, as ``replay run`` wrote it."""

    path: Path
    summary: dict[str, Any]
    checked: set[str] = field(default_factory=set, compare=False, repr=False)
    """The Parquet files whose stamp and columns :meth:`table` has checked."""

    @property
    def policy(self) -> str:
        """The shrinker policy of the run."""
        return str(self.summary["policy"])

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the trace the run replayed."""
        return str(self.summary["trace"].get("fingerprint", ""))

    @property
    def label(self) -> str:
        """A short name for tables and legends: ``<runs folder>/<policy folder>``."""
        parent = self.path.resolve().parent.name
        return f"{parent}/{self.path.name}" if parent else self.path.name

    def file(self, name: str) -> Path:
        """A file of the run, which must exist."""
        path = self.path / name
        if not path.is_file():
            raise RunFormatError(
                f"run {self.path} has no {name}; the run is incomplete or damaged, "
                "write it again with replay run"
            )
        return path

    def table(self, name: str, columns: list[str] | None = None) -> Any:
        """A Parquet file of the run as an Arrow table, checked to belong to this run.

        The file's ``replay.run`` stamp must name this run's schema version, policy and trace
        fingerprint (a file copied from another run is refused), and its columns must be the
        ones ``schemas/run.v1.json`` lists, of the types it gives.

        Raises
        ------
        RunFormatError
            The file is missing, unreadable, of another run or trace, or of other columns.
        """
        import pyarrow.parquet as pq

        path = self.check_file(name)
        try:
            return pq.read_table(path, columns=columns)
        except (OSError, ValueError, KeyError) as exc:
            raise RunFormatError(
                f"{path} cannot be read ({' '.join(str(exc).split())[:200]}); the run is damaged, "
                "write it again with replay run"
            ) from None

    def check_file(self, name: str) -> Path:
        """Check a Parquet file of the run by its footer alone (see :meth:`table`); its path."""
        import pyarrow.parquet as pq

        path = self.file(name)
        if name in self.checked:
            return path
        try:
            footer = pq.ParquetFile(path)
            # The stamp is in the footer's key-value metadata: a spilled fault file gets it when
            # its writer closes, after the Arrow schema was written.
            self._check(path, footer.schema_arrow, footer.metadata.metadata or {})
            self.checked.add(name)
            return path
        except (OSError, ValueError, KeyError) as exc:
            raise RunFormatError(
                f"{path} cannot be read ({' '.join(str(exc).split())[:200]}); the run is damaged, "
                "write it again with replay run"
            ) from None

    def _check(self, path: Path, schema: Any, footer: dict[bytes, bytes]) -> None:
        """Check a run file's stamp against ``summary.json`` and its columns against the schema."""
        name = path.name
        raw = footer.get(RUN_KEY.encode())
        if raw is None:
            raise RunFormatError(
                f"{path} has no {RUN_KEY} stamp, so it is not a file replay run wrote (a trace or "
                f"another table put in its place?); write the run again with replay run"
            )
        try:
            stamp = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            stamp = None
        if not isinstance(stamp, dict):
            raise RunFormatError(f"{path}: its {RUN_KEY} stamp is damaged; write the run again")
        mine = {
            "schema_version": self.summary["schema_version"],
            "policy": self.policy,
            "trace_fingerprint": self.fingerprint,
        }
        for key, want in mine.items():
            if stamp.get(key) != want:
                raise RunFormatError(
                    f"{path} is not a file of this run: its {RUN_KEY} stamp has {key} "
                    f"{_short(stamp.get(key))} where {self.path / SUMMARY_FILE} has "
                    f"{_short(want)} (a file copied from another run?); write the run again "
                    "with replay run"
                )
        for column in RUN_SCHEMA["files"][name]["columns"]:
            index = schema.get_field_index(column["name"])
            if index < 0:
                if column.get("optional"):
                    continue
                raise RunFormatError(
                    f"{path} has no column {column['name']}; write the run again with replay run"
                )
            got = schema.field(index).type
            if not _type_ok(got, column["type"]):
                raise RunFormatError(
                    f"{path}: column {column['name']} is {got}, not {column['type']} as "
                    f"run.v1.json says; write the run again with replay run"
                )


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _type_ok(got: Any, want: str) -> bool:
    """Whether an Arrow type is the run schema's column type ``want``."""
    import pyarrow as pa

    def text(t: Any) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

    if want == "string" or want.startswith("enum:"):
        return text(got) or (pa.types.is_dictionary(got) and text(got.value_type))
    if want.startswith("list<"):
        is_list = pa.types.is_list(got) or pa.types.is_large_list(got)
        return is_list and _type_ok(got.value_type, want[5:-1])
    return bool(got == pa.type_for_alias(want))


def is_run(path: Path) -> bool:
    """Whether ``path`` looks like a run directory (it has a ``summary.json``).

    A folder that cannot be read counts as one, so that :func:`load_run` names it and says why
    it cannot be read, rather than it being skipped in silence.
    """
    try:
        return (path / SUMMARY_FILE).is_file()
    except OSError:
        return path.is_dir()


def runs_in(path: Path) -> list[Path]:
    """The run directories directly inside ``path`` (a folder of runs), by name."""
    if is_run(path) or not path.is_dir():
        return []
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return []  # load_run(path) says why it cannot be read
    return [p for p in entries if is_run(p)]


def _read_summary(summary_path: Path) -> Any:
    """The JSON document of a ``summary.json``, or one line saying why it cannot be read."""
    try:
        return json.loads(summary_path.read_text())
    except RecursionError:
        raise RunFormatError(
            f"{summary_path} is nested too deep to be a summary; the run is damaged, write it "
            "again with replay run"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(
            f"{summary_path} cannot be read ({exc}); the run is damaged, write it again with "
            "replay run"
        ) from None


def load_run(path: Path) -> RunDir:
    """Check that ``path`` is a run this version reads, and load its ``summary.json``.

    Parameters
    ----------
    path
        One policy's run folder, as ``replay run`` wrote it (``runs/quick/zap``).

    Returns
    -------
    RunDir
        The folder and its summary; :meth:`RunDir.file` finds its other files.

    Raises
    ------
    RunFormatError
        The folder is missing, is not a run (a folder of runs is named as such), or holds a
        summary that is damaged or of a newer run schema.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_run, load_scenario, open_trace, run_policies, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> _ = write_runs(run_policies(open_trace("quick.parquet"), ("none",)), Path("runs"))
    >>> run = load_run(Path("runs/none"))
    >>> run.policy, run.summary["totals"]["pages_freed"]
    ('none', 0)
    """
    summary_path = _summary_path(path)
    summary = _checked_summary(path, summary_path)
    run = RunDir(path, summary)
    for name in RUN_FILES:
        if name != SUMMARY_FILE:  # each file's footer: of this run, of the schema's columns
            run.check_file(name)
    return run


def _summary_path(path: Path) -> Path:
    """The ``summary.json`` of a run folder, once the folder is known to be one."""
    if not path.exists():
        raise RunFormatError(f"run folder {path} does not exist; give a folder replay run wrote")
    if not path.is_dir():
        raise RunFormatError(
            f"{path} is a file, not a run; give a folder replay run wrote, e.g. runs/quick/zap"
        )
    try:
        # Its files' checks below would raise, not answer, in a folder that cannot be read.
        next(path.iterdir(), None)
    except OSError as exc:
        raise RunFormatError(
            f"run folder {path} cannot be read ({(exc.strerror or str(exc)).lower()}); give "
            "yourself read access to it (chmod) or run as its owner"
        ) from None
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        inner = [p.name for p in runs_in(path)]
        if inner:
            raise RunFormatError(
                f"{path} holds runs ({', '.join(inner)}), not one run; give one of them, "
                f"e.g. {path / inner[0]}"
            )
        raise RunFormatError(
            f"{path} is not a run (no summary.json); give a folder replay run wrote, "
            "e.g. runs/quick/zap"
        )
    return summary_path


def _checked_summary(path: Path, summary_path: Path) -> dict[str, Any]:
    """The summary, read and checked: a version this reads, every key and shape the code uses."""
    summary = _read_summary(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("schema_version"), int):
        raise RunFormatError(
            f"{summary_path} has no schema_version; it was not written by replay run"
        )
    version = summary["schema_version"]
    if version > RUN_SCHEMA_VERSION:
        raise RunFormatError(
            f"run {path} has run schema v{version}, newer than this kvm-mmu-replay reads "
            f"(v{RUN_SCHEMA_VERSION}); upgrade kvm-mmu-replay"
        )
    if version < 1:
        raise RunFormatError(f"run {path} has unknown run schema v{version}")
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    if missing:
        raise RunFormatError(
            f"{summary_path} lacks {', '.join(missing)}; the run is damaged, write it again "
            "with replay run"
        )
    try:
        check_summary(summary)
    except ShapeError as exc:
        raise RunFormatError(
            f"{summary_path}: {exc}; the run is damaged, write it again with replay run"
        ) from None
    return summary
