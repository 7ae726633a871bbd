"""``python -m lineage``: the same command line as ``lineage``."""

from lineage.cli.main import app

app(prog_name="lineage")
