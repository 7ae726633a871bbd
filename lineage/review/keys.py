"""Keys are identities: a reviewer is an Ed25519 key pair, and the trust file says whose public
keys may sign reviews.

The private key lives outside the database, readable by its owner only (0600): the file named
by ``LINEAGE_KEY``, else ``<config dir>/lineage/keys/<name>.key`` (``$XDG_CONFIG_HOME`` or
``~/.config``). The trust file is the trust root, also outside the database, like an ssh
``allowed_signers`` file or a TUF root: ``--trust FILE`` > ``LINEAGE_TRUST`` >
``./lineage-trust.json``, holding ``{"version": 1, "keys": [{"name", "keyid", "public_key"}]}``
with the raw 32-byte public key in base64 and ``keyid`` its sha256 in hex. An attacker who can
write the database can add names to it, but not keys to this file.

All cryptography is the ``cryptography`` package's Ed25519; nothing here is hand-written.
"""

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lineage.errors import BadInputError, NotFoundError
from lineage.store.files import read_file, write_atomically
from lineage.store.names import check_name, identity

TRUST_FILE = "lineage-trust.json"
KEY_HELP = "run `lineage key create --as NAME`, then `lineage key trust NAME`"


def _crypto():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


@dataclass(frozen=True)
class TrustedKey:
    name: str
    keyid: str
    public_key: bytes  # raw 32 bytes


@dataclass(frozen=True)
class Trust:
    """The trust file, read: which public keys may sign, under which names."""

    path: str
    keys: tuple  # TrustedKey

    def by_keyid(self, keyid: str) -> Optional[TrustedKey]:
        return next((k for k in self.keys if k.keyid == keyid), None)

    def keyids_of(self, names) -> set[str]:
        """Every key trusted under any of ``names`` (compared as identities)."""
        wanted = {identity(n) for n in names}
        return {k.keyid for k in self.keys if identity(k.name) in wanted}


@dataclass(frozen=True)
class SigningKey:
    name: str
    keyid: str
    path: str
    private: object  # cryptography Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def keyid_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def resolve_trust_path(trust: Optional[str] = None) -> Path:
    """``--trust`` > ``LINEAGE_TRUST`` > ``./lineage-trust.json``."""
    return Path(trust or os.environ.get("LINEAGE_TRUST") or TRUST_FILE)


def key_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lineage" / "keys"


def key_path(name: str, folder: Optional[str | os.PathLike] = None) -> Path:
    """Where ``name``'s private key is: in ``folder`` when given, else ``LINEAGE_KEY``, else
    the config dir."""
    if folder is not None:
        return Path(folder) / f"{_file_stem(name)}.key"
    if os.environ.get("LINEAGE_KEY"):
        return Path(os.environ["LINEAGE_KEY"])
    return key_dir() / f"{_file_stem(name)}.key"


def _file_stem(name: str) -> str:
    # The identity, made safe as a file name (names are free text).
    ident = identity(check_name(name, "a key's name"))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ident).strip(".") or "key"
    return safe if safe == ident else f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


def create_key(name: str, *, path: Optional[str | os.PathLike] = None,
               force: bool = False) -> TrustedKey:
    """Make an Ed25519 key pair for ``name``: the private key (PKCS#8 PEM, 0600) at ``path``
    (default ``key_path(name)``) and the public key beside it (``.pub``, PEM).

    Example: ``create_key("reviewer")``
    """
    serialization, ed25519 = _crypto()
    name = check_name(name, "a key's name")
    target = Path(path) if path else key_path(name)
    if target.exists() and not force:
        raise BadInputError(f"{target} exists: a key is an identity, so it is never replaced "
                            "silently (pass --force to make a new one)")
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(target, 0o600)
    except OSError as exc:
        raise BadInputError(f"{target}: cannot write the key ({exc.strerror or exc})") from None
    public_pem = public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomically(target.with_suffix(".pub"), lambda tmp: tmp.write_bytes(public_pem))
    return TrustedKey(name=name, keyid=keyid_of(raw), public_key=raw)


def load_signing_key(name: str, folder: Optional[str | os.PathLike] = None) -> SigningKey:
    """``name``'s private key, from ``key_path(name, folder)``; a one-line error saying what
    to run when there is none."""
    serialization, ed25519 = _crypto()
    path = key_path(name, folder)
    if not path.exists():
        raise NotFoundError(f"no signing key for {name!r} at {path}: reviews are signed; "
                            f"{KEY_HELP.replace('NAME', name)}")
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise BadInputError(f"{path} is readable by others: a private key must be 0600 "
                            f"(chmod 600 {path})")
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise BadInputError(f"{path}: not an Ed25519 key")
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    return SigningKey(name=name, keyid=keyid_of(raw), path=str(path), private=private)


def read_public_key(path: str | os.PathLike) -> bytes:
    """The raw 32-byte Ed25519 public key in a PEM file (public or private)."""
    serialization, ed25519 = _crypto()
    if not Path(path).exists():
        raise NotFoundError(f"no key file {path}")
    data = read_file(path, "key file")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise BadInputError(f"{path}: not a PEM Ed25519 key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BadInputError(f"{path}: not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_trust(trust: Optional[str] = None, *, required: bool = True) -> Trust:
    """The trust file (see ``resolve_trust_path``). Without one, ``required`` raises a
    NotFoundError that says how to make it; otherwise an empty trust is returned."""
    path = resolve_trust_path(trust)
    if not path.exists():
        if not required:
            return Trust(path=str(path), keys=())
        raise NotFoundError(
            f"no trust file {path}: it lists whose public keys may sign reviews; "
            f"{KEY_HELP} (or point --trust / LINEAGE_TRUST at the team's file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = []
        for entry in data["keys"]:
            raw = base64.b64decode(entry["public_key"], validate=True)
            if len(raw) != 32 or keyid_of(raw) != entry["keyid"]:
                raise ValueError(f"key {entry.get('name')!r} does not match its keyid")
            keys.append(TrustedKey(name=check_name(entry["name"], "a trusted name"),
                                   keyid=entry["keyid"], public_key=raw))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path}: not a lineage trust file ({exc}); expected "
                            '{"version": 1, "keys": [{"name", "keyid", "public_key"}]}') from None
    return Trust(path=str(path), keys=tuple(keys))


def trust_key(name: str, *, trust: Optional[str] = None,
              public_key: Optional[str | os.PathLike] = None) -> TrustedKey:
    """Add ``name``'s public key to the trust file (made if missing): from ``public_key`` (a PEM
    file), else from ``name``'s local key. A key already trusted under another name is refused;
    a name may hold several keys (a new laptop, a rotated key).

    Example: ``trust_key("reviewer")``
    """
    name = check_name(name, "a trusted name")
    if public_key is not None:
        raw = read_public_key(public_key)
    else:
        raw = read_public_key(load_signing_key(name).path)
    entry = TrustedKey(name=name, keyid=keyid_of(raw), public_key=raw)
    current = read_trust(trust, required=False)
    for k in current.keys:
        if k.keyid == entry.keyid:
            if identity(k.name) == identity(name):
                return k  # already trusted: nothing to change
            raise BadInputError(f"key {entry.keyid[:16]} is already trusted as {k.name!r}")
    keys = [*current.keys, entry]
    doc = {"version": 1, "keys": [{"name": k.name, "keyid": k.keyid,
                                   "public_key": base64.b64encode(k.public_key).decode()}
                                  for k in keys]}
    path = Path(current.path)
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n"))
    return entry
