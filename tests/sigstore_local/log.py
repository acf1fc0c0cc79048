"""A Rekor v1 transparency log in memory: entry kinds, Merkle tree, SETs and checkpoints.

It accepts `hashedrekord` 0.0.1 and `dsse` 0.0.1 proposals as Rekor does (the signature must
verify with the given key or certificate; the stored body is the RFC 8785 canonical form of
what Rekor stores), keeps the RFC 6962 tree of their leaf hashes, and answers entries in
Rekor's JSON shape: `{entryID: {body, integratedTime, logID, logIndex, verification:
{signedEntryTimestamp, inclusionProof: {logIndex, rootHash, treeSize, hashes, checkpoint}}}}`.
Entry ids are the 16-hex tree id followed by the 64-hex leaf hash; lookups take either form.

`index_offset` models Rekor's sharding: entries of earlier (inactive) shards come first, so the
global `logIndex` is the offset plus the index in this tree, while the proof's `logIndex` is
the index in this tree. `tamper` makes the log serve altered evidence for one entry.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_public_key

from tests.sigstore_local import merkle
from tests.sigstore_local.ca import p256, utcnow
from tests.sigstore_local.encoding import (
    PublicKey,
    b64,
    canonical_json,
    pem_public,
    sha256_hex,
    spki,
)

MAX_SEARCH_QUERIES = 10
_HASHES: dict[str, tuple[hashes.HashAlgorithm, int]] = {
    "sha256": (hashes.SHA256(), 64),
    "sha384": (hashes.SHA384(), 96),
    "sha512": (hashes.SHA512(), 128),
}


class RekorError(Exception):
    """A refusal as Rekor answers it: an HTTP status and `{"code", "message"}`."""

    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class RekorEntry:
    """One log entry as a client sees it, parsed from a `{entryID: {...}}` answer."""

    uuid: str
    log_index: int
    integrated_time: int
    log_id: str
    body: bytes
    response: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_response(cls, response: Mapping[str, Any]) -> RekorEntry:
        ((uuid, value),) = response.items()
        return cls(
            uuid=uuid,
            log_index=int(value["logIndex"]),
            integrated_time=int(value["integratedTime"]),
            log_id=value["logID"],
            body=base64.b64decode(value["body"]),
            response=copy.deepcopy(dict(response)),
        )

    @property
    def value(self) -> dict[str, Any]:
        """The entry object under the uuid."""
        result: dict[str, Any] = self.response[self.uuid]
        return result

    @property
    def signed_entry_timestamp(self) -> bytes:
        return base64.b64decode(self.value["verification"]["signedEntryTimestamp"])

    @property
    def inclusion_proof(self) -> dict[str, Any]:
        proof: dict[str, Any] = self.value["verification"]["inclusionProof"]
        return proof

    @property
    def kind(self) -> tuple[str, str]:
        doc = json.loads(self.body)
        return str(doc["kind"]), str(doc["apiVersion"])


_KEEP: Any = object()  # marks a Tampering field that leaves its value alone


@dataclass(frozen=True)
class Tampering:
    """Changes to one served entry; a field left at its default is not changed.

    Proof fields (`hashes`, `root_hash` as bytes, `tree_size`, `proof_log_index`,
    `checkpoint`) replace the inclusion proof's; the others replace the entry's own fields
    (`signed_entry_timestamp` as bytes, None to drop it).
    """

    hashes: Any = _KEEP
    root_hash: Any = _KEEP
    tree_size: Any = _KEEP
    proof_log_index: Any = _KEEP
    checkpoint: Any = _KEEP
    body: Any = _KEEP
    integrated_time: Any = _KEEP
    log_index: Any = _KEEP
    signed_entry_timestamp: Any = _KEEP

    def changes(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not _KEEP
        }

    def apply(self, response: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of the Rekor answer `response` with these changes made."""
        out = copy.deepcopy(dict(response))
        ((_uuid, value),) = out.items()
        proof = value["verification"]["inclusionProof"]
        for name, new in self.changes().items():
            if name == "hashes":
                proof["hashes"] = [h.hex() if isinstance(h, bytes) else h for h in new]
            elif name == "root_hash":
                proof["rootHash"] = new.hex() if isinstance(new, bytes) else new
            elif name == "tree_size":
                proof["treeSize"] = new
            elif name == "proof_log_index":
                proof["logIndex"] = new
            elif name == "checkpoint":
                proof["checkpoint"] = new
            elif name == "body":
                value["body"] = b64(new) if isinstance(new, bytes) else new
            elif name == "integrated_time":
                value["integratedTime"] = new
            elif name == "log_index":
                value["logIndex"] = new
            elif new is None:
                value["verification"].pop("signedEntryTimestamp", None)
            else:
                value["verification"]["signedEntryTimestamp"] = b64(new)
        return out


def tamper(response: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """`Tampering(**changes).apply(response)`: a Rekor answer with altered evidence."""
    return Tampering(**changes).apply(response)


@dataclass(frozen=True)
class _Stored:
    body: bytes
    integrated_time: int
    leaf: bytes
    index_keys: frozenset[str]


class TransparencyLog:
    """An append-only Rekor v1 log with its own ECDSA P-256 key; thread-safe."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey | None = None,
        *,
        hostname: str = "rekor.sigstore.local",
        tree_id: int | None = None,
        index_offset: int = 0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.key = key or p256()
        self.hostname = hostname
        self.tree_id = tree_id if tree_id is not None else secrets.randbits(62) + 1
        self.index_offset = index_offset
        self.clock = clock
        self._lock = threading.RLock()
        self._entries: list[_Stored] = []
        self._by_leaf: dict[bytes, int] = {}
        self._tampering: dict[int, Tampering] = {}

    # -- identity --------------------------------------------------------------------------

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()

    @property
    def key_id(self) -> bytes:
        """sha256 of the log key's DER SPKI: Rekor's log id, as bytes."""
        return bytes.fromhex(sha256_hex(spki(self.public_key)))

    @property
    def log_id(self) -> str:
        """The log id as Rekor writes it in entries (64 hex)."""
        return self.key_id.hex()

    @property
    def entry_id_prefix(self) -> str:
        """The 16-hex tree id that Rekor puts before the leaf hash in entry ids."""
        return f"{self.tree_id:016x}"

    def public_key_pem(self) -> str:
        return pem_public(self.public_key)

    # -- tree ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._entries)

    def _leaves(self, size: int | None) -> list[bytes]:
        leaves = [e.leaf for e in self._entries]
        if size is None:
            return leaves
        if not 0 <= size <= len(leaves):
            raise RekorError(400, f"tree size {size} is not between 0 and {len(leaves)}")
        return leaves[:size]

    def root_hash(self, size: int | None = None) -> bytes:
        with self._lock:
            return merkle.root(self._leaves(size))

    def checkpoint(
        self,
        size: int | None = None,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        root_hash: bytes | None = None,
    ) -> str:
        """The signed note for the tree of `size` (default: now), as Rekor serves it.

        `key` signs with another key (the key hint stays this log's); `root_hash` claims
        another root: both make checkpoints that must not verify.
        """
        with self._lock:
            n = self.size if size is None else size
            tree_root = self.root_hash(n) if root_hash is None else root_hash
        note = f"{self.hostname} - {self.tree_id}\n{n}\n{b64(tree_root)}\n"
        signature = (key or self.key).sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return f"{note}\n\u2014 {self.hostname} {b64(self.key_id[:4] + signature)}\n"

    def log_info(self) -> dict[str, Any]:
        """`GET /api/v1/log`."""
        with self._lock:
            size = self.size
            return {
                "inactiveShards": [],
                "rootHash": self.root_hash(size).hex(),
                "signedTreeHead": self.checkpoint(size),
                "treeID": str(self.tree_id),
                "treeSize": size,
            }

    # -- entries ---------------------------------------------------------------------------

    def signed_entry_timestamp(self, body: bytes, integrated_time: int, log_index: int) -> bytes:
        """The SET: the log's signature over canonical `{body, integratedTime, logID, logIndex}`."""
        payload = canonical_json(
            {
                "body": b64(body),
                "integratedTime": integrated_time,
                "logID": self.log_id,
                "logIndex": log_index,
            }
        )
        return self.key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def append_body(
        self,
        body: bytes,
        *,
        integrated_time: int | None = None,
        index_keys: Iterable[str] = (),
    ) -> int:
        """Append a canonical body without any check; returns its global log index.

        This is the raw tree operation `add` uses after validating a proposal; tests use it
        to put any bytes in the log.
        """
        leaf = merkle.leaf_hash(body)
        with self._lock:
            if leaf in self._by_leaf:
                raise RekorError(
                    409,
                    "An equivalent entry already exists in the transparency log with UUID "
                    + self.entry_id(self._by_leaf[leaf]),
                    {"Location": f"/api/v1/log/entries/{self.entry_id(self._by_leaf[leaf])}"},
                )
            when = int(self.clock().timestamp()) if integrated_time is None else integrated_time
            self._entries.append(_Stored(body, when, leaf, frozenset(index_keys)))
            self._by_leaf[leaf] = len(self._entries) - 1
            return self.index_offset + len(self._entries) - 1

    def add(self, proposed: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /api/v1/log/entries`: validate, canonicalize, append; the new entry's answer."""
        body, keys = canonicalize(proposed)
        index = self.append_body(body, index_keys=keys)
        return self.entry(index)

    def entry_id(self, position: int) -> str:
        return self.entry_id_prefix + self._entries[position].leaf.hex()

    def _position(self, log_index: int) -> int | None:
        position = log_index - self.index_offset
        return position if 0 <= position < len(self._entries) else None

    def entry(self, log_index: int, *, tree_size: int | None = None) -> dict[str, Any]:
        """The answer for the entry at global `log_index`, proved into the tree of `tree_size`
        (default: the current tree). Raises RekorError(404) when there is none."""
        with self._lock:
            position = self._position(log_index)
            if position is None:
                raise RekorError(404, f"no entry at log index {log_index}")
            size = self.size if tree_size is None else tree_size
            if not position < size <= self.size:
                raise RekorError(400, f"entry {log_index} is not in a tree of size {size}")
            stored = self._entries[position]
            leaves = self._leaves(size)
            response = {
                self.entry_id(position): {
                    "body": b64(stored.body),
                    "integratedTime": stored.integrated_time,
                    "logID": self.log_id,
                    "logIndex": log_index,
                    "verification": {
                        "inclusionProof": {
                            "checkpoint": self.checkpoint(size),
                            "hashes": [h.hex() for h in merkle.inclusion_path(position, leaves)],
                            "logIndex": position,
                            "rootHash": merkle.root(leaves).hex(),
                            "treeSize": size,
                        },
                        "signedEntryTimestamp": b64(
                            self.signed_entry_timestamp(
                                stored.body, stored.integrated_time, log_index
                            )
                        ),
                    },
                }
            }
            tampering = self._tampering.get(position)
        return tampering.apply(response) if tampering else response

    def index_of(self, uuid: str) -> int | None:
        """The global log index of the entry with this uuid (64 hex) or entry id (80 hex)."""
        uuid = uuid.lower()
        if len(uuid) == 80:
            if uuid[:16] != self.entry_id_prefix:
                return None
            uuid = uuid[16:]
        if len(uuid) != 64:
            raise RekorError(400, f"invalid uuid {uuid[:100]}: expected 64 or 80 hex")
        try:
            leaf = bytes.fromhex(uuid)
        except ValueError:
            raise RekorError(400, f"invalid uuid {uuid[:100]}: not hex") from None
        with self._lock:
            position = self._by_leaf.get(leaf)
        return None if position is None else self.index_offset + position

    def entry_by_uuid(self, uuid: str) -> dict[str, Any]:
        index = self.index_of(uuid)
        if index is None:
            raise RekorError(404, f"no entry with uuid {uuid}")
        return self.entry(index)

    def retrieve(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`POST /api/v1/log/entries/retrieve`: found entries for uuids, proposals and indexes;
        absent ones are skipped, as Rekor does."""
        uuids = _list(query, "entryUUIDs")
        proposals = _list(query, "entries")
        indexes = _list(query, "logIndexes")
        if len(uuids) + len(proposals) + len(indexes) > MAX_SEARCH_QUERIES:
            raise RekorError(422, f"more than max allowed {MAX_SEARCH_QUERIES} entries in request")
        found: list[dict[str, Any]] = []
        for uuid in uuids:
            if not isinstance(uuid, str):
                raise RekorError(400, "entryUUIDs: expected strings")
            index = self.index_of(uuid)
            if index is not None:
                found.append(self.entry(index))
        for proposal in proposals:
            if not isinstance(proposal, Mapping):
                raise RekorError(400, "entries: expected objects")
            body, _keys = canonicalize(proposal, verify=False)
            with self._lock:
                position = self._by_leaf.get(merkle.leaf_hash(body))
            if position is not None:
                found.append(self.entry(self.index_offset + position))
        for index in indexes:
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise RekorError(400, "logIndexes: expected non-negative integers")
            if self._position(index) is not None:
                found.append(self.entry(index))
        return found

    def search_index(self, query: Mapping[str, Any]) -> list[str]:
        """`POST /api/v1/index/retrieve`: entry ids by artifact `hash`, signer `email` or
        `publicKey`; several criteria combine with `operator` "and" (default) or "or"."""
        wanted: list[str] = []
        if query.get("hash") is not None:
            wanted.append(_normalise_hash(query["hash"]))
        if query.get("email") is not None:
            if not isinstance(query["email"], str):
                raise RekorError(400, "email: expected a string")
            wanted.append(query["email"].lower())
        if query.get("publicKey") is not None:
            wanted.append(_public_key_index_key(query["publicKey"]))
        if not wanted:
            raise RekorError(400, "search needs a hash, email or publicKey")
        operator = query.get("operator", "and")
        if operator not in ("and", "or"):
            raise RekorError(400, f"operator: found {operator!r}, expected and or or")
        with self._lock:
            hits = []
            for position, stored in enumerate(self._entries):
                matches = [key in stored.index_keys for key in wanted]
                if all(matches) if operator == "and" else any(matches):
                    hits.append(self.entry_id(position))
        return hits

    # -- tampering -------------------------------------------------------------------------

    def tamper(self, log_index: int, /, **changes: Any) -> None:
        """Serve altered evidence for the entry at `log_index` from now on (see `Tampering`)."""
        with self._lock:
            position = self._position(log_index)
            if position is None:
                raise KeyError(log_index)
            self._tampering[position] = Tampering(**changes)

    def clear_tampering(self) -> None:
        with self._lock:
            self._tampering.clear()


# -- entry kinds ---------------------------------------------------------------------------


def _list(query: Mapping[str, Any], name: str) -> list[Any]:
    value = query.get(name) or []
    if not isinstance(value, list):
        raise RekorError(400, f"{name}: expected a list")
    return value


def _normalise_hash(value: object) -> str:
    if not isinstance(value, str):
        raise RekorError(400, "hash: expected a string")
    algorithm, sep, digest = value.lower().rpartition(":")
    algorithm = algorithm if sep else "sha256"
    expected = {"sha256": 64, "sha512": 128, "sha1": 40}.get(algorithm)
    if (
        expected is None
        or len(digest) != expected
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise RekorError(400, f"hash: found {value[:140]!r}, expected [sha256:]<hex>")
    return f"{algorithm}:{digest}"


def _public_key_index_key(value: object) -> str:
    if not isinstance(value, Mapping) or value.get("format") != "x509":
        raise RekorError(400, "publicKey: only format x509 is supported here")
    try:
        pem = base64.b64decode(value.get("content", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RekorError(400, "publicKey.content: expected base64") from None
    return sha256_hex(_Signer.parse(pem, "publicKey.content").canonical)


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise RekorError(400, f"{what}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError):
            raise RekorError(400, f"{what}: invalid base64") from None


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RekorError(400, f"{what}: expected an object")
    return value


@dataclass(frozen=True)
class _Signer:
    """A verifier as Rekor's x509 package parses it: a certificate (chain) or a public key."""

    key: PublicKey
    canonical: bytes  # the PEM Rekor stores: the certificate's or the key's
    subjects: tuple[str, ...]

    @classmethod
    def parse(cls, pem: bytes, what: str) -> _Signer:
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            certs = []
        if certs:
            cert = certs[0]
            key = cert.public_key()
            if not isinstance(
                key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
            ):
                raise RekorError(400, f"{what}: unsupported certificate key type")
            subjects: list[str] = []
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                subjects += [e.lower() for e in san.get_values_for_type(x509.RFC822Name)]
                subjects += san.get_values_for_type(x509.UniformResourceIdentifier)
            except x509.ExtensionNotFound:
                pass
            return cls(key, b"".join(c.public_bytes(Encoding.PEM) for c in certs), tuple(subjects))
        try:
            loaded = load_pem_public_key(pem)
        except ValueError:
            raise RekorError(
                400, f"{what}: neither a PEM certificate nor a PEM public key"
            ) from None
        if not isinstance(
            loaded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ):
            raise RekorError(400, f"{what}: unsupported public key type")
        return cls(loaded, pem_public(loaded).encode(), ())

    def verify_digest(
        self, signature: bytes, digest: bytes, algorithm: hashes.HashAlgorithm
    ) -> bool:
        prehashed = utils.Prehashed(algorithm)
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, digest, ec.ECDSA(prehashed))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            else:
                return False  # hashedrekord 0.0.1 has no Ed25519 over a digest
        except InvalidSignature:
            return False
        return True

    def verify_message(self, signature: bytes, message: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def canonicalize(proposed: Mapping[str, Any], *, verify: bool = True) -> tuple[bytes, set[str]]:
    """The canonical body Rekor stores for a proposed entry, and its search index keys.

    With `verify`, the signature must verify as Rekor requires before it logs anything.
    """
    proposed = _mapping(proposed, "proposed entry")
    kind, version = proposed.get("kind"), proposed.get("apiVersion")
    spec = _mapping(proposed.get("spec"), "spec")
    if (kind, version) == ("hashedrekord", "0.0.1"):
        return _hashedrekord(spec, verify)
    if (kind, version) == ("dsse", "0.0.1"):
        return _dsse(spec, verify)
    raise RekorError(400, f"unsupported entry kind {kind!r} version {version!r}")


def _hashedrekord(spec: Mapping[str, Any], verify: bool) -> tuple[bytes, set[str]]:
    data = _mapping(spec.get("data"), "spec.data")
    digest_obj = _mapping(data.get("hash"), "spec.data.hash")
    algorithm = digest_obj.get("algorithm")
    value = digest_obj.get("value")
    if algorithm not in _HASHES or not isinstance(value, str):
        raise RekorError(400, f"spec.data.hash: unsupported algorithm {algorithm!r}")
    hash_alg, length = _HASHES[algorithm]
    value = value.lower()
    if len(value) != length or any(c not in "0123456789abcdef" for c in value):
        raise RekorError(400, f"spec.data.hash.value: expected {length} hex digits")
    sig = _mapping(spec.get("signature"), "spec.signature")
    signature = _b64decode(sig.get("content"), "spec.signature.content")
    key_obj = _mapping(sig.get("publicKey"), "spec.signature.publicKey")
    signer = _Signer.parse(
        _b64decode(key_obj.get("content"), "spec.signature.publicKey.content"),
        "spec.signature.publicKey.content",
    )
    if verify and not signer.verify_digest(signature, bytes.fromhex(value), hash_alg):
        raise RekorError(
            400, "verifying signature: invalid signature when validating ASN.1 encoded signature"
        )
    body = canonical_json(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": algorithm, "value": value}},
                "signature": {
                    "content": b64(signature),
                    "publicKey": {"content": b64(signer.canonical)},
                },
            },
        }
    )
    keys = {f"{algorithm}:{value}", sha256_hex(signer.canonical), *signer.subjects}
    return body, keys


def _dsse(spec: Mapping[str, Any], verify: bool) -> tuple[bytes, set[str]]:
    proposed = _mapping(spec.get("proposedContent"), "spec.proposedContent")
    raw_envelope = proposed.get("envelope")
    if not isinstance(raw_envelope, str):
        raise RekorError(400, "spec.proposedContent.envelope: expected a JSON string")
    try:
        envelope = _mapping(json.loads(raw_envelope), "envelope")
    except ValueError:
        raise RekorError(400, "spec.proposedContent.envelope: invalid JSON") from None
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise RekorError(400, "envelope.payloadType: expected a string")
    payload = _b64decode(envelope.get("payload"), "envelope.payload")
    raw_sigs = envelope.get("signatures")
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise RekorError(400, "envelope.signatures: expected at least one")
    verifiers = proposed.get("verifiers")
    if not isinstance(verifiers, list) or not verifiers:
        raise RekorError(400, "spec.proposedContent.verifiers: expected at least one")
    signers = [_Signer.parse(_b64decode(v, "verifiers[]"), "verifiers[]") for v in verifiers]
    message = pae(payload_type, payload)
    by_signature: dict[str, _Signer] = {}
    for item in raw_sigs:
        sig_text = _mapping(item, "envelope.signatures[]").get("sig")
        signature = _b64decode(sig_text, "envelope.signatures[].sig")
        assert isinstance(sig_text, str)
        match = next(
            (s for s in signers if not verify or s.verify_message(signature, message)), None
        )
        if match is None:
            raise RekorError(
                400, "could not verify envelope: all signatures must have a key that verifies it"
            )
        by_signature[sig_text] = match
    body = canonical_json(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": sha256_hex(raw_envelope.encode())},
                "payloadHash": {"algorithm": "sha256", "value": sha256_hex(payload)},
                "signatures": [
                    {"signature": sig, "verifier": b64(by_signature[sig].canonical)}
                    for sig in sorted(by_signature)
                ],
            },
        }
    )
    keys = {
        f"sha256:{sha256_hex(payload)}",
        f"sha256:{sha256_hex(raw_envelope.encode())}",
    }
    for signer in by_signature.values():
        keys.add(sha256_hex(signer.canonical))
        keys.update(signer.subjects)
    if payload_type == "application/vnd.in-toto+json":
        keys.update(_statement_subjects(payload))
    return body, keys


def _statement_subjects(payload: bytes) -> set[str]:
    try:
        statement = json.loads(payload)
        return {
            f"{algorithm}:{digest}".lower()
            for subject in statement.get("subject", [])
            for algorithm, digest in subject.get("digest", {}).items()
        }
    except (ValueError, AttributeError, TypeError):
        return set()


def rekor_entries(responses: Sequence[Mapping[str, Any]]) -> list[RekorEntry]:
    """Parse a list answer (`entries/retrieve`) into entries."""
    return [RekorEntry.from_response(r) for r in responses]
