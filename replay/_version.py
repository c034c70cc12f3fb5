"""The version of kvm-mmu-replay, in one place.

The package's metadata is built from it (pyproject's ``tool.hatch.version``), and the tool
names itself with it: reading the installed metadata (``importlib.metadata.version``) costs
57 ms on its first call, a fifth of a replay's start-up.
"""

__version__ = "0.1.0"
