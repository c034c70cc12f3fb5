"""``import replay.convert`` loads the converter, not the synthetic generator."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_convert_does_not_load_synth() -> None:
    """A fresh interpreter: the modules already loaded here would hide an import."""
    code = "import json, sys; import replay.convert; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(proc.stdout))
    # The VM config reader, which once took its TOML reading from the scenario module, is in.
    assert {"replay.convert.vms", "replay._toml"} <= loaded
    assert sorted(m for m in loaded if m == "replay.synth" or m.startswith("replay.synth.")) == []
