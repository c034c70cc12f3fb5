"""The hostile-input contract tests of the whole command line (issue 12)."""
