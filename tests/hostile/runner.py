"""Run one ``replay`` command as a hostile user would, and hold it to the command line's contract.

The contract (README "Exit codes", issue 12) that every command keeps, whatever it is given:

* exit code 0, 1 or 4; 2 only for a usage error (unknown option, missing argument, a value
  click itself cannot parse); 130 or 143 only when the test interrupted the command;
* no Python traceback on stderr, and no typer/rich error box except for usage errors;
* an error is ONE line on stderr, starting ``error:``;
* memory stays under an address-space limit (``RLIMIT_AS``): a ``MemoryError`` or a death by
  signal is a failure;
* nothing is left behind in the output folder or its parent: no ``.*.partial``,
  ``.replay-convert-*``, ``.replay-probe.*``, ``.replay-stdin-*``, nor any other file that was not
  there before and is not a declared output;
* when it exits 0, every declared output is accepted by the tool itself (a trace by
  ``replay inspect``, runs by ``replay diff``, a rendered log by ``replay convert``...), and
  ``--json`` printed one JSON document with a ``schema_version``.

Every command runs as a subprocess (``python -m replay``) in a fresh temporary folder, so that
the tests drive only the public command line and files, never the package's private names.
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "traces" / "samples" / "quick.parquet"
LOGS = ROOT / "traces" / "logs"
SCENARIOS = ROOT / "traces" / "scenarios"
DATA = Path(__file__).resolve().parent / "data"

ADDRESS_SPACE_LIMIT = 3 << 30
"""RLIMIT_AS of every command: 3 GiB, six times what a replay of 50 M accesses needs (README)."""
DEFAULT_TIMEOUT = 120.0
"""A command that has not finished after this long is killed and counted as hung."""

TEMPORARY_NAMES = (".*.partial", ".replay-convert-*", ".replay-probe.*", ".replay-stdin-*")
"""Names of the tool's temporary files and folders; none may outlive a command."""

USAGE_MESSAGES = (
    "No such option",
    "No such command",
    "Missing argument",
    "Missing option",
    "Missing parameter",
    "requires an argument",
    "Got unexpected extra argument",
    "is not one of",
    "is not a valid",
    "Invalid value for '-",
)
"""What click says for a usage error. A missing or unreadable *file* is not one: the
tool says so itself, in one line with exit 1 (issue 12 item 16)."""
NOT_USAGE = ("does not exist", "is not readable", "not writable", "ermission", "is a directory")
MEMORY_SIGNS = (
    "MemoryError",
    "Unable to allocate",
    "bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "ArrowMemoryError",
)
BOX_CHARS = ("╭", "╰", "│ ")

INTERRUPTED = (130, 143)
"""Exit codes of a command the test stopped with SIGINT (Ctrl-C) or SIGTERM."""


class ContractViolation(AssertionError):
    """A command broke the command line's contract; the message shows the whole command."""


@dataclass
class Outcome:
    """A finished command: its arguments, exit code and output, and the folder it ran in."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    folder: Path
    seconds: float
    new_files: list[str] = field(default_factory=list)

    @property
    def error_line(self) -> str:
        """The one ``error:`` line of a failed command ('' when there is none)."""
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("error:")]
        return lines[0] if lines else ""

    def json(self) -> Any:
        """The command's ``--json`` document."""
        return json.loads(self.stdout)

    def describe(self) -> str:
        """The command and what it printed, for assertion messages."""
        err = self.stderr if len(self.stderr) < 6000 else self.stderr[-6000:]
        out = self.stdout if len(self.stdout) < 2000 else self.stdout[:2000] + "..."
        return (
            f"replay {' '.join(self.args)}\n(in {self.folder}) exit {self.returncode} after "
            f"{self.seconds:.1f} s\n--- stderr ---\n{err}\n--- stdout ---\n{out}"
        )


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _limits(plain_user: bool, address_space: int, file_size: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if file_size is not None:
            # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as a full
            # disk fails one with ENOSPC.
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        if plain_user and os.geteuid() == 0:
            # Root passes every permission check. Dropping the two capabilities that let it
            # from the bounding set makes the command, once exec'd, a user without override.
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return apply


def permissions_bind(folder: Path) -> bool:
    """Whether a command started with ``plain_user`` is refused a file of mode 000 in ``folder``.

    False where root keeps its override (no CAP_SETPCAP to drop it, as in some containers).
    """
    probe = folder / ".permission-probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r}).read()"],
            preexec_fn=_limits(True, ADDRESS_SPACE_LIMIT, None),
            capture_output=True,
            check=False,
        )
    except subprocess.SubprocessError:
        return False
    finally:
        probe.unlink()
    return proc.returncode != 0 and b"PermissionError" in proc.stderr


def command(*args: str) -> list[str]:
    """The argv of ``replay ARGS`` with this checkout's interpreter."""
    return [sys.executable, "-m", "replay", *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The commands' environment: the caller's, a fixed terminal width, no colour.

    Bytecode is written only into a cache folder of the test run's own (tests/conftest.py sets
    PYTHONPYCACHEPREFIX), never next to the sources; without one, not at all.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLAY_", "PYTEST_"))}
    env.update({"COLUMNS": "120", "NO_COLOR": "1"})
    if not env.get("PYTHONPYCACHEPREFIX"):
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (relative), with its size and modification time."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except FileNotFoundError:  # pragma: no cover - removed while listed
                continue
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the tool's temporary names."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in TEMPORARY_NAMES)


class Sandbox:
    """A fresh temporary folder (``work``) inside a private parent, where one test's commands run.

    Inputs are put in ``work``; commands run with ``work`` as their current folder, so relative
    output paths land there. The private parent lets the contract check the output folder's
    parent as well.

    Parameters
    ----------
    base
        Where the private parent is made (a pytest temporary folder).
    plain_user
        Run every command as a user whom file permissions bind: as root, without the
        capabilities that override them (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``).
    """

    def __init__(self, base: Path | None = None, *, plain_user: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hostile-", dir=base))
        self.path = self.root / "work"
        self.path.mkdir()
        self.plain_user = plain_user

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the sandbox (every file the tests and the commands made in it)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def put(self, name: str, content: bytes | str) -> Path:
        """Write an input file (text or bytes) into the sandbox."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def copy(self, source: Path, name: str | None = None) -> Path:
        """Copy a file or a folder into the sandbox."""
        target = self.path / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return target

    # -- running -----------------------------------------------------------------------
    def start(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        stdout: int | None = subprocess.PIPE,
        address_space: int = ADDRESS_SPACE_LIMIT,
        file_size: int | None = None,
    ) -> Running:
        """Start ``replay ARGS`` in the sandbox and return at once (for signal tests).

        ``address_space`` is the command's RLIMIT_AS; ``file_size`` its RLIMIT_FSIZE, if any.
        """
        before = _listing(self.root)
        proc = subprocess.Popen(
            command(*args),
            cwd=self.path,
            env=environment(env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            # The limits are set in the child, between fork and exec: they bind the command only.
            preexec_fn=_limits(self.plain_user, address_space, file_size),
            start_new_session=True,
        )
        running = Running(self, tuple(args), proc, before, time.monotonic(), address_space)
        running.stdin = stdin
        return running

    def run(
        self,
        *args: str,
        outputs: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        address_space: int = ADDRESS_SPACE_LIMIT,
        file_size: int | None = None,
    ) -> Outcome:
        """Run ``replay ARGS`` to the end and check the contract.

        Parameters
        ----------
        outputs
            The outputs the command may write, by path relative to the sandbox (a glob; a
            folder covers what is inside it) and kind: ``trace``, ``runs`` (a folder of
            policy runs), ``run``, ``log`` (kernel text with its ``.vms.toml``), ``report``,
            ``parquet`` or ``file``. Anything else new is a leftover. Declared outputs are
            checked by the tool itself when the command exits 0.
        check
            False returns the outcome without checking the contract (the caller checks it).
        address_space, file_size
            The command's RLIMIT_AS and RLIMIT_FSIZE (see :meth:`start`).
        """
        running = self.start(
            *args, stdin=stdin, env=env, address_space=address_space, file_size=file_size
        )
        return running.finish(outputs=outputs, timeout=timeout, check=check)


class Running:
    """A command started by :meth:`Sandbox.start`."""

    def __init__(
        self,
        sandbox: Sandbox,
        args: tuple[str, ...],
        proc: subprocess.Popen[bytes],
        before: dict[str, tuple[int, int]],
        started: float,
        address_space: int,
    ) -> None:
        self.address_space = address_space
        self.sandbox = sandbox
        self.args = args
        self.proc = proc
        self.before = before
        self.started = started
        self.signalled: int | None = None
        self.stdin: bytes | None = None
        """What is written to the command's standard input (while it runs)."""

    @property
    def pid(self) -> int:
        """The command's process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the command is still running."""
        return self.proc.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` to the command (as a terminal, ``timeout`` or a scheduler would)."""
        self.signalled = sig
        if self.alive():
            self.proc.send_signal(sig)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Poll ``predicate`` every millisecond; False if the command ended first."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if not self.alive():
                return predicate()
            if time.monotonic() > deadline:
                raise AssertionError(f"replay {' '.join(self.args)}: condition not met in time")
            time.sleep(0.001)
        return True

    def finish(
        self,
        *,
        outputs: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
    ) -> Outcome:
        """Wait for the command, then check the contract (unless ``check`` is False)."""
        try:
            out, err = self.proc.communicate(input=self.stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
            outcome = self._outcome(out, err)
            raise ContractViolation(
                f"did not finish within {timeout:g} s (killed)\n{outcome.describe()}"
            ) from None
        outcome = self._outcome(out, err)
        if check:
            check_contract(
                outcome,
                self.before,
                outputs or {},
                interrupted=self.signalled,
                address_space=self.address_space,
            )
            if outcome.returncode == 0:
                accept_outputs(self.sandbox, outcome, outputs or {})
        return outcome

    def _outcome(self, out: bytes | None, err: bytes | None) -> Outcome:
        return Outcome(
            args=self.args,
            returncode=self.proc.returncode,
            stdout=(out or b"").decode("utf-8", "replace"),
            stderr=(err or b"").decode("utf-8", "replace"),
            folder=self.sandbox.path,
            seconds=time.monotonic() - self.started,
        )


def _usage_error(stderr: str) -> bool:
    return any(m in stderr for m in USAGE_MESSAGES) and not any(m in stderr for m in NOT_USAGE)


def _declared(rel: str, outputs: Iterable[str]) -> bool:
    for pattern in outputs:
        pattern = f"work/{pattern}"
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern + "/*"):
            return True
        # A declared output's folders (runs/quick for runs/quick/zap/...).
        if pattern.startswith(rel + "/"):
            return True
    return False


def leftovers(
    root: Path, before: dict[str, tuple[int, int]], declared: Iterable[str] = ()
) -> list[str]:
    """New paths under ``root`` that are temporary, or not one of the ``declared`` outputs."""
    after = _listing(root)
    bad = []
    for rel in sorted(set(after) - set(before)):
        temporary = any(is_temporary(part) for part in Path(rel).parts)
        if temporary or not _declared(rel, declared):
            bad.append(rel)
    return bad


def check_contract(
    outcome: Outcome,
    before: dict[str, tuple[int, int]],
    outputs: Mapping[str, str],
    *,
    interrupted: int | None = None,
    address_space: int = ADDRESS_SPACE_LIMIT,
) -> None:
    """Raise :class:`ContractViolation` if ``outcome`` breaks the contract (module docstring)."""
    problems = []
    rc = outcome.returncode
    err = outcome.stderr
    usage = rc == 2 and _usage_error(err)
    allowed = {0, 1, 4, *(INTERRUPTED if interrupted is not None else ())}
    if rc not in allowed and not usage:
        if rc < 0:
            problems.append(f"killed by signal {signal.Signals(-rc).name}")
        elif rc == 2:
            problems.append("exit 2 for something that is not a usage error")
        else:
            problems.append(f"exit code {rc}")
    if "Traceback (most recent call last)" in err:
        problems.append("a Python traceback on stderr")
    if not usage and any(c in err for c in BOX_CHARS):
        problems.append("a typer/rich error box on stderr")
    if any(m in err for m in MEMORY_SIGNS):
        problems.append(f"ran out of its {address_space / (1 << 30):g} GiB address space")
    if rc != 0 and not usage:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if rc in (1, *INTERRUPTED) and (len(lines) != 1 or not lines[0].startswith("error: ")):
            problems.append(f"the error is not one line starting 'error:' ({len(lines)} lines)")
    if rc == 0 and any(ln.startswith("error:") for ln in err.splitlines()):
        problems.append("exit 0 with an error line")
    if rc == 0 and "--json" in outcome.args:
        try:
            doc = json.loads(outcome.stdout)
            if not isinstance(doc, dict) or "schema_version" not in doc:
                problems.append("--json printed JSON without a schema_version")
        except ValueError:
            problems.append("--json printed something that is not one JSON document")
    # A failed command writes nothing (outputs appear whole or not at all); an interrupted one
    # may have finished first, which its test checks.
    declared = list(outputs) if rc in (0, 4) or interrupted is not None else []
    left = leftovers(outcome.folder.parent, before, declared)
    if left:
        problems.append(f"left behind: {', '.join(left[:8])}")
    outcome.new_files = left
    if problems:
        raise ContractViolation("; ".join(problems) + "\n" + outcome.describe())


# -- the tool accepts its own outputs ----------------------------------------------------------
def accept_outputs(sandbox: Sandbox, outcome: Outcome, outputs: Mapping[str, str]) -> None:
    """Check every declared output of a successful command with the tool itself."""
    for pattern, kind in outputs.items():
        for path in sorted(sandbox.path.glob(pattern)):
            accept(sandbox, path, kind, outcome)


def accept(sandbox: Sandbox, path: Path, kind: str, outcome: Outcome | None = None) -> None:
    """Check one output with the tool (or, for what the tool never reads, by its format)."""
    where = "" if outcome is None else f"\nwritten by:\n{outcome.describe()}"
    rel = str(path.relative_to(sandbox.path))

    def must(*args: str) -> Outcome:
        (sandbox.path / "accepted").mkdir(exist_ok=True)
        got = sandbox.run(*args, outputs={"accepted": "file"}, check=False)
        if got.returncode != 0:
            raise ContractViolation(
                f"the tool refuses its own output {rel} ({kind}):\n{got.describe()}{where}"
            )
        shutil.rmtree(sandbox.path / "accepted", ignore_errors=True)
        return got

    if kind == "trace":
        must("inspect", rel, "--json")
    elif kind == "runs":
        policies = sorted(p.name for p in path.iterdir() if (p / "summary.json").is_file())
        if not policies:
            raise ContractViolation(f"{rel} holds no run{where}")
        must("diff", f"{rel}/{policies[0]}", f"{rel}/{policies[-1]}", "--json")
    elif kind == "run":
        must("diff", rel, rel, "--json")
    elif kind == "log":
        config = path.with_name(path.name + ".vms.toml")
        must(
            "convert",
            rel,
            "--vm-config",
            str(config.relative_to(sandbox.path)),
            "-o",
            "accepted/back.parquet",
        )
    elif kind == "report":
        _accept_report(path, where)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        pq.read_table(path)
    elif kind != "file":
        raise ValueError(f"unknown output kind {kind!r}")


def _accept_report(path: Path, where: str) -> None:
    import base64
    import re

    html = path.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    if not images:
        raise ContractViolation(f"report {path} has no plot{where}")
    for data in images:
        if not base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n"):
            raise ContractViolation(f"report {path} holds a broken image{where}")
