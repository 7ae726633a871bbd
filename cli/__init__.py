"""lineage's command line: a thin Typer layer over the library (shipped as lineage.cli)."""
