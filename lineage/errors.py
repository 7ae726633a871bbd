"""One hierarchy of lineage errors; each class carries the exit code the CLI uses.

Exit codes: 0 ok; 1 other lineage error; 2 bad input or usage; 3 not found; 4 refused
(gate failed, not approved, four-eyes, append-only); 5 integrity failure; 6 schema out of date.
"""


class LineageError(Exception):
    """Any lineage failure that is not a bug."""

    exit_code = 1


class BadInputError(LineageError):
    """The input (a file, an option, a value) is wrong; nothing was written."""

    exit_code = 2


class AlreadyExistsError(BadInputError):
    """A name that must be unique is taken."""


class NotFoundError(LineageError):
    """A named object (source, dataset, version, row, ...) does not exist."""

    exit_code = 3


class RefusedError(LineageError):
    """The store refuses the operation (policy, status, gate)."""

    exit_code = 4


class AppendOnlyError(RefusedError):
    """History is append-only: an update or delete was attempted."""


class QuarantineError(RefusedError):
    """The source is rejected or revoked, so its data may not enter the store."""


class SnapshotNotApprovedError(RefusedError):
    """The snapshot is pending, rejected or revoked, so its rows may not be used for training."""


class GateFailedError(RefusedError):
    """A review gate failed; the review was recorded and the snapshot or model is unchanged."""


class IntegrityError(LineageError):
    """Stored content no longer matches its recorded digest, or the event chain is broken."""

    exit_code = 5


class SchemaOutdatedError(LineageError):
    """The database schema is older than this lineage; run `lineage db upgrade`."""

    exit_code = 6
