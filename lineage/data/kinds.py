"""The choices a source takes (its kind, a review's decision), in a module that imports nothing
else, so the command line can offer them without loading the database layer."""

from enum import Enum


class SourceKind(str, Enum):
    internal = "internal"
    external = "external"
    crowdsourced = "crowdsourced"
    scraped = "scraped"
    third_party = "third-party"


class Decision(str, Enum):
    approve = "approve"
    reject = "reject"
    revoke = "revoke"
