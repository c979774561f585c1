"""The Tutela protocol from docs/PROTOCOL.md, for the independent client
(`tutela_client.py`): protobuf encoding by field number, the signed bytes of
each kind of message, the enrolment token, the pinned transport, and checks
of what the collector signs (rule bundles, releases, exemption sets).
"""

import base64
import hashlib
import json
import os
import socket
import ssl
import time
import tomllib

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

REJECTED_SEQ = "tutela-rejected-seq"
DEADLINE = 20


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def passed(case):
    print(f"PASS {case}", flush=True)


# --- protobuf wire format (proto3, fields in number order, defaults omitted)


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def msg(*fields):
    """Encodes (number, value) pairs; a list value is a repeated field."""
    out = bytearray()
    for num, value in fields:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str):
                v = v.encode()
            if isinstance(v, (bytes, bytearray)):
                if len(v) == 0 and not isinstance(value, list):
                    continue
                out += varint(num << 3 | 2) + varint(len(v)) + v
            elif isinstance(v, bool):
                if v:
                    out += varint(num << 3) + varint(1)
            elif isinstance(v, int):
                if v != 0:
                    out += varint(num << 3) + varint(v)
            else:
                raise TypeError(v)
    return bytes(out)


def parse(data):
    """Decodes a message into {number: [values]} (ints or bytes)."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            check(i < len(data), "truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(data):
        key = read_varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            v = read_varint()
        elif wire == 2:
            n = read_varint()
            v = bytes(data[i : i + n])
            i += n
        elif wire == 1:
            v = int.from_bytes(data[i : i + 8], "little")
            i += 8
        elif wire == 5:
            v = int.from_bytes(data[i : i + 4], "little")
            i += 4
        else:
            raise Failure(f"wire type {wire}")
        fields.setdefault(num, []).append(v)
    return fields


def one(fields, num, default=None):
    return fields.get(num, [default])[-1]


def signed_int(v):
    return v - (1 << 64) if v is not None and v >= 1 << 63 else v


# --- keys and signed bytes (PROTOCOL.md, "Signed messages")

EVENT = b"tutela-event-v2"
HEARTBEAT = b"tutela-heartbeat-v2"
SUBSCRIBE = b"tutela-subscribe-v2"
RELEASE = b"tutela-bundle-release-v2"
EXEMPTIONS = b"tutela-exemptions-v1"
ENROL = b"tutela-enrol-v1"
REKEY = b"tutela-rekey-v1"
NOTICE = b"tutela-notice-v1"
NOTICE_ACK = b"tutela-notice-ack-v1"


def new_key():
    return Ed25519PrivateKey.generate()


def raw_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def raw_private(key):
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def verifies(public, message, signature):
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def rekey_bytes(agent_id, new_public, time_ms):
    a = agent_id.encode()
    return (
        REKEY
        + len(a).to_bytes(4, "big")
        + a
        + new_public
        + time_ms.to_bytes(8, "big", signed=True)
    )


def now_ms():
    return int(time.time() * 1000)


# --- token and pinned transport (PROTOCOL.md, "Enrolment tokens", "Transport")


def read_token(text, now=None):
    """The token's fields; refused when malformed or expired at `now`
    (this machine's clock by default)."""
    text = text.strip()
    check(len(text) <= 2048 and text.startswith("tutela1."), "token prefix")
    rest = text[len("tutela1.") :]
    check("=" not in rest, "token is unpadded")
    doc = json.loads(base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4)))
    for name, kind in [
        ("collector", str),
        ("fingerprint", str),
        ("secret", str),
        ("expires_ms", int),
    ]:
        check(isinstance(doc.get(name), kind), f"token field {name}")
    check(len(doc["fingerprint"]) == 64, "fingerprint is 64 hex digits")
    int(doc["fingerprint"], 16)
    check(16 <= len(doc["secret"]) <= 256, "secret length")
    check(doc["expires_ms"] > (now_ms() if now is None else now), "token expired")
    return doc


def pinned_channel(address, fingerprint):
    host, port = address.rsplit(":", 1)
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as tcp:
        with probe.wrap_socket(tcp, server_hostname="tutela-collector") as tls:
            der = tls.getpeercert(binary_form=True)
    check(
        hashlib.sha256(der).hexdigest() == fingerprint.lower(),
        "the collector's certificate is the pinned one",
    )
    # The pinned certificate is the only trust anchor: a server without its
    # private key cannot complete the gRPC handshake.
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    credentials = grpc.ssl_channel_credentials(root_certificates=pem)
    return grpc.secure_channel(
        address,
        credentials,
        options=[("grpc.ssl_target_name_override", "tutela-collector")],
    )


class Collector:
    def __init__(self, channel):
        self.channel = channel

    def unary(self, path, request):
        call = self.channel.unary_unary(path)
        return call(request, timeout=DEADLINE)

    def enrol(self, request):
        return parse(self.unary("/tutela.v1.Enrolment/Enrol", request))

    def rekey(self, request):
        return parse(self.unary("/tutela.v1.Enrolment/Rekey", request))

    def heartbeat(self, request):
        return parse(self.unary("/tutela.v1.Ingest/Heartbeat", request))

    def submit(self, events):
        """Ingest/Submit: returns (ack as (agent_id, seq, status) or None, refused_code,
        refused_message, rejected_seq)."""
        reply = parse(self.unary("/tutela.v1.Ingest/Submit", msg((1, list(events)))))
        ack_bytes = one(reply, 1, None)
        ack = None
        if ack_bytes is not None:
            a = parse(ack_bytes)
            ack = (one(a, 1, b"").decode(), one(a, 2, 0), one(a, 3, 0))
        return ack, one(reply, 2, 0), one(reply, 3, b"").decode(), one(reply, 4, 0)

    def acknowledge(self, request):
        return parse(self.unary("/tutela.v1.Notices/Acknowledge", request))

    def stream(self, events):
        """Sends events on one stream; returns (acks, error or None)."""
        call = self.channel.stream_stream("/tutela.v1.Ingest/Stream")
        acks = []
        try:
            for reply in call(iter(events), timeout=DEADLINE):
                a = parse(reply)
                acks.append(
                    (one(a, 1, b"").decode(), one(a, 2, 0), one(a, 3, 0))
                )
            return acks, None
        except grpc.RpcError as e:
            return acks, e

    def subscribe(self, request, wanted):
        call = self.channel.unary_stream("/tutela.v1.Rules/Subscribe")
        updates = []
        replies = call(request, timeout=DEADLINE)
        for reply in replies:
            updates.append(parse(reply))
            if len(updates) >= wanted:
                replies.cancel()
                break
        return updates

    def subscribe_to_end(self, request, first, ready):
        """Subscribes, calls `ready` after the first `first` updates, then reads
        until the stream ends; returns (updates, error or None). No deadline: the
        stream is meant to stay open until the collector ends it."""
        call = self.channel.unary_stream("/tutela.v1.Rules/Subscribe")
        updates = []
        try:
            for reply in call(request):
                updates.append(parse(reply))
                if len(updates) == first:
                    ready()
            return updates, None
        except grpc.RpcError as e:
            return updates, e


def refused(callable_, code, case, metadata_seq=None, contains=None):
    try:
        callable_()
    except grpc.RpcError as e:
        check(e.code() == code, f"{case}: expected {code}, got {e.code()} {e.details()}")
        seq = dict(e.trailing_metadata() or ()).get(REJECTED_SEQ)
        check(seq == metadata_seq, f"{case}: {REJECTED_SEQ} {seq!r}, expected {metadata_seq!r}")
        if contains:
            check(contains in e.details(), f"{case}: {e.details()!r} says {contains!r}")
        passed(case)
        return
    raise Failure(f"{case}: accepted, expected {code}")


def stream_refused(collector, events, code, case, metadata_seq=None, contains=None):
    def send():
        _, error = collector.stream(events)
        if error:
            raise error

    refused(send, code, case, metadata_seq, contains)


# --- messages


def enrol_request(secret, key, station="PY-LAB-01", proof_key=None, public=None):
    proof = (proof_key or key).sign(ENROL + secret.encode())
    return msg(
        (1, secret),
        (2, public if public is not None else raw_public(key)),
        (3, station),
        (4, "interop-0.1"),
        (5, proof),
        (6, hashlib.sha256(b"python machine\n" + station.encode()).hexdigest()),
    )


class Agent:
    def __init__(self, agent_id, key):
        self.agent_id = agent_id
        self.key = key
        self.last_heartbeat = 0

    def body(self, seq, prev_hash, capture=None, matches=1, context="I will hurt myself", **extra):
        match = lambda i: msg(
            (1, f"self-harm/r{i}"), (2, "self-harm"), (3, 5), (4, "hurt myself"), (5, 7), (6, 18)
        )
        info = b""
        if capture is not None:
            info = msg(
                (1, hashlib.sha256(capture).digest()),
                (2, extra.pop("size", len(capture))),
                (3, 1),
                (4, 1),
                (5, "image/jpeg"),
            )
        return msg(
            (1, extra.pop("event_id", os.urandom(16).hex())),
            (2, self.agent_id),
            (3, seq),
            (4, prev_hash),
            (5, now_ms()),
            (6, "pupil.py"),
            (7, "PY-LAB-01"),
            (8, msg((1, 1), (2, context), (3, "python"), (5, extra.pop("title", "Notes")))),
            (9, [match(i) for i in range(matches)]),
            (10, info),
            (11, 1),
            (12, 1),
        )

    def event(self, body, capture=b"", key=None, bare=False):
        signature = (key or self.key).sign(body if bare else EVENT + body)
        return msg((1, body), (2, signature), (3, capture))

    def heartbeat(self, time_ms=None, bare=False, problems=None):
        if time_ms is None:
            time_ms = max(now_ms(), self.last_heartbeat + 1)
            self.last_heartbeat = time_ms
        body = msg(
            (1, self.agent_id), (2, time_ms), (3, "interop-0.1"), (4, 1), (7, "PY-LAB-01"),
            (12, list(problems or [])),
        )
        return msg((1, body), (2, self.key.sign(body if bare else HEARTBEAT + body)))

    def subscription(self, bare=False):
        body = msg((1, self.agent_id), (2, 0), (3, now_ms()), (4, 0))
        return msg((1, body), (2, self.key.sign(body if bare else SUBSCRIBE + body)))


# --- verifying what the collector signs (PROTOCOL.md, "Rule bundles", "Exemption sets")


def bundle_verifies(bundle_key, update):
    data, version = one(update, 1, b""), one(update, 2, 0)
    shadow, release = bool(one(update, 3, 0)), one(update, 4, b"")
    released = RELEASE + bytes([shadow]) + version.to_bytes(4, "big") + hashlib.sha256(data).digest()
    if not verifies(bundle_key, released, release):
        return None
    wire = json.loads(data)
    if set(wire) != {
        "format", "format_version", "pack_id", "version", "signed_at_ms", "key_id", "pack_toml", "signature",
    }:
        return None
    if wire["format"] != "tutela-rule-bundle" or wire["format_version"] != 1:
        return None
    if wire["key_id"] != hashlib.sha256(bundle_key).hexdigest()[:16]:
        return None
    field = lambda s: len(s.encode()).to_bytes(8, "big") + s.encode()
    signed = (
        b"tutela-rule-bundle\0"
        + (1).to_bytes(4, "big")
        + field(wire["pack_id"])
        + field(wire["key_id"])
        + field(wire["pack_toml"])
        + wire["version"].to_bytes(4, "big")
        + wire["signed_at_ms"].to_bytes(8, "big", signed=True)
    )
    if not verifies(bundle_key, signed, base64.b64decode(wire["signature"], validate=True)):
        return None
    pack = tomllib.loads(wire["pack_toml"])["pack"]
    if pack["id"] != wire["pack_id"] or pack["version"] != wire["version"] or wire["version"] != version:
        return None
    return (wire["pack_id"], version, shadow)


def notice_verify(bundle_key, signed, group):
    """The notice's fields and body bytes, if it verifies and is for `group`."""
    s = parse(signed)
    body, signature = one(s, 1, b""), one(s, 2, b"")
    if not verifies(bundle_key, NOTICE + body, signature):
        return None
    fields = parse(body)
    if one(fields, 1, b"").decode() != group:
        return None
    return {"version": one(fields, 2, 0), "text": one(fields, 3, b"").decode(), "body": body}


def exemptions_verify(bundle_key, signed, group):
    s = parse(signed)
    body, signature = one(s, 1, b""), one(s, 2, b"")
    if not verifies(bundle_key, EXEMPTIONS + body, signature):
        return None
    fields = parse(body)
    if one(fields, 2, b"").decode() != group:
        return None
    entries = []
    for raw in fields.get(1, []):
        e = parse(raw)
        entries.append(
            {
                "group": one(e, 2, b"").decode(),
                "category": one(e, 3, b"").decode(),
                "term": one(e, 4, b"").decode(),
                "starts_ms": signed_int(one(e, 5, 0)),
                "ends_ms": signed_int(one(e, 6, 0)),
            }
        )
    return {"issued_ms": signed_int(one(fields, 3, 0)), "exemptions": entries}
