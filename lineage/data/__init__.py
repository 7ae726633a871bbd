"""The data: sources and their reviews (``sources``), datasets and the parsing of what users type
(``datasets``), file readers (``readers``), ingest, version state from deltas (``deltas``),
transformations (``transforms``, ``external_edit``), provenance coverage (``coverage``) and reading
versions back (``versions``)."""
