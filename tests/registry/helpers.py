"""Test helpers: tiny HTTP servers on 127.0.0.1 and a token service for distribution."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.servers import RegistryServer, ServerStartError, _tail

# A handler gets (method, path with query, request headers) and answers
# (status, headers, body chunks).
Reply = tuple[int, dict[str, str], Iterator[bytes] | bytes]
Route = Callable[[str, str, dict[str, str]], Reply]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 answering every request with `route`."""

    route: Route
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    sent: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> HTTPServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append(Request(self.command, self.path, headers))
                status, reply_headers, body = outer.route(self.command, self.path, headers)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    if "content-length" not in {k.lower() for k in reply_headers}:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                        outer.sent += len(body)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        outer.sent += len(chunk)
                except OSError:
                    pass  # the client hung up, as it should for oversized bodies
                self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = _any  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class SilentServer:
    """A socket on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._sock.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """Docker libtrust's key id: base32 of the first 240 bits of sha256(SPKI DER), in 4s."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


class TokenIssuer:
    """Mints ES256 registry tokens that distribution's `auth: token` accepts."""

    service = "sigverify-test"
    issuer = "sigverify-test-issuer"

    def __init__(self, workdir: Path) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = workdir / "token-root.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self._key.public_key())

    def mint(self, access: list[tuple[str, list[str]]], ttl: int = 300) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        claims = {
            "iss": self.issuer,
            "sub": "tester",
            "aud": self.service,
            "exp": now + ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": "repository", "name": name, "actions": actions} for name, actions in access
            ],
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class TokenService:
    """The token endpoint (`/token?service=&scope=`), optionally requiring basic credentials."""

    issuer: TokenIssuer
    require: tuple[str, str] | None = None
    expires_in: int | None = 300
    issued: list[tuple[str, bool]] = field(default_factory=list)

    def route(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path != "/token" or query.get("service") != [self.issuer.service]:
            return 400, {}, b'{"error":"bad request"}'
        auth = headers.get("authorization")
        if self.require is not None:
            expected = "Basic " + base64.b64encode(":".join(self.require).encode()).decode()
            if auth != expected:
                return 401, {"WWW-Authenticate": 'Basic realm="token"'}, b"{}"
        access: list[tuple[str, list[str]]] = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository":
                access.append((name, actions.split(",")))
            self.issued.append((scope, auth is not None))
        doc: dict[str, object] = {"token": self.issuer.mint(access)}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()


@dataclass
class TokenRegistryServer(RegistryServer):
    """docker-registry with `auth: token` trusting `issuer`, realm at `realm`."""

    issuer: TokenIssuer | None = None
    realm: str = ""

    def start(self) -> TokenRegistryServer:
        import re
        import subprocess

        assert self.issuer is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir / 'data'}}}}}\n"
            "http: {addr: 127.0.0.1:0, secret: test-secret}\n"
            f"auth: {{token: {{realm: '{self.realm}', service: {self.issuer.service}, "
            f"issuer: {self.issuer.issuer}, rootcertbundle: {self.issuer.bundle}}}}}\n"
        )
        log = self.workdir / "registry.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            match = re.search(rb"listening on (?:\[::\]|127\.0\.0\.1):(\d+)", log.read_bytes())
            if match:
                self.port = int(match.group(1))
                return self
            time.sleep(0.01)
        self.stop()
        raise ServerStartError(f"token registry did not start: {_tail(log)}")


def tls_pair(workdir: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` only (no IP SAN), issued by a fresh CA,
    and a client context that trusts that CA."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path, ca_path = workdir / "cert.pem", workdir / "key.pem", workdir / "ca.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(ca_path))
    return server, client
