"""Model versions: training on approved snapshots (``training``) and the registry of model
versions, their artifacts and releases (``registry``)."""
