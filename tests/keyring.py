"""Keys for the suite: every review is signed, so the test session gets its own config dir with
an Ed25519 key for each actor the tests review as, and a trust file listing them (outside any
test's store, as a team's trust file is). Loaded from conftest as a plugin."""

import getpass
import os

import pytest

from lineage.review.keys import create_key, trust_key

TRUSTED = ("reviewer", "engineer", "tester", "rev", "lead", "ingester", "alice", "someone-else",
           "data-engineer", "red-team")


@pytest.fixture(scope="session", autouse=True)
def keyring(tmp_path_factory):
    """``XDG_CONFIG_HOME`` and ``LINEAGE_TRUST`` for the whole session (child processes the
    tests start inherit them). ``attacker`` has a key but is not trusted."""
    home = tmp_path_factory.mktemp("keyring")
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "LINEAGE_TRUST", "LINEAGE_KEY")}
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["LINEAGE_TRUST"] = str(home / "lineage-trust.json")
    os.environ.pop("LINEAGE_KEY", None)
    for name in {*TRUSTED, getpass.getuser()}:  # the login name: the actor without --as
        create_key(name)
        trust_key(name)
    create_key("attacker")
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
