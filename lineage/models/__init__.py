"""Model versions: training on approved snapshots (``training``), the registry of model
versions, their artifacts and releases (``registry``), and external models through quarantine:
import, isolated evaluation, signed review (``external``)."""
