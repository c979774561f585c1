"""Checks docs/protocol-vectors.json with the independent implementation in
`tutela_wire.py`: keys from seeds, the token, and for every signed kind the
signed bytes rebuilt from the document's layouts, the (deterministic)
signatures, and the bodies re-encoded by this encoder byte for byte.
"""

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tutela_wire import (
    ENROL,
    EVENT,
    EXEMPTIONS,
    HEARTBEAT,
    NOTICE,
    NOTICE_ACK,
    RELEASE,
    SUBSCRIBE,
    check,
    msg,
    one,
    parse,
    passed,
    raw_public,
    rekey_bytes,
)


def reencode(body):
    """The body encoded again from its decoded fields, in number order."""
    fields = parse(body)
    return msg(*[(n, vals if len(vals) > 1 else vals[0]) for n, vals in sorted(fields.items())])


def check_vectors(path):
    with open(path) as f:
        v = json.load(f)
    check(v["protocol_version"] == 2, "protocol version 2")
    keys = {}
    for name, k in v["keys"].items():
        keys[name] = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed"]))
        check(raw_public(keys[name]).hex() == k["public_key"], f"public key of {name}")
    passed("vectors: keys from their seeds")

    t = v["token"]
    text = t["text"]
    check(text.startswith("tutela1.") and "=" not in text, "token prefix, unpadded")
    rest = text[len("tutela1."):]
    doc = json.loads(base64.urlsafe_b64decode(rest + "=" * (-len(rest) % 4)))
    for name in ["collector", "fingerprint", "secret", "expires_ms"]:
        check(doc[name] == t[name], f"token field {name}")
    passed("vectors: the token")

    def signed(vector, key, expected_bytes):
        check(bytes.fromhex(vector["signed_bytes"]) == expected_bytes, f"signed bytes {vector}")
        check(key.sign(expected_bytes).hex() == vector["signature"], f"signature {vector}")

    e = v["enrol_proof"]
    signed(e, keys["agent"], ENROL + e["token_secret"].encode())
    r = v["rekey"]
    message = rekey_bytes(r["agent_id"], bytes.fromhex(r["new_public_key"]), r["time_ms"])
    check(bytes.fromhex(r["signed_bytes"]) == message, "re-key bytes")
    check(keys["agent"].sign(message).hex() == r["old_signature"], "old key's re-key signature")
    check(keys["agent_new"].sign(message).hex() == r["new_signature"], "new key's re-key signature")
    passed("vectors: enrolment proof and re-key")

    prev = bytes(32)
    for ev in v["events"]:
        body = bytes.fromhex(ev["body"])
        signed(ev, keys["agent"], EVENT + body)
        check(reencode(body) == body, "event body re-encodes byte for byte")
        fields = parse(body)
        check(one(fields, 3) == ev["seq"] and one(fields, 4) == prev, "sequence and chain")
        prev = hashlib.sha256(body).digest()
        check(prev.hex() == ev["body_sha256"], "body hash")
        capture = bytes.fromhex(ev["capture"])
        if 10 in fields:
            info = parse(one(fields, 10))
            check(one(info, 1) == hashlib.sha256(capture).digest(), "capture hash")
            check(one(info, 2) == len(capture), "capture size")
        else:
            check(capture == b"", "no capture")
    for kind, domain in [("heartbeat", HEARTBEAT), ("subscribe", SUBSCRIBE)]:
        body = bytes.fromhex(v[kind]["body"])
        signed(v[kind], keys["agent"], domain + body)
        check(reencode(body) == body, f"{kind} body re-encodes byte for byte")
    passed("vectors: events, heartbeat and subscription")

    collector = keys["collector_bundle_key"]
    b = v["bundle"]
    wire = json.loads(b["bundle"])
    field = lambda s: len(s.encode()).to_bytes(8, "big") + s.encode()
    bundle_bytes = (
        b"tutela-rule-bundle\0" + (1).to_bytes(4, "big") + field(wire["pack_id"])
        + field(wire["key_id"]) + field(wire["pack_toml"])
        + wire["version"].to_bytes(4, "big") + wire["signed_at_ms"].to_bytes(8, "big", signed=True)
    )
    signed(b, collector, bundle_bytes)
    check(base64.b64decode(wire["signature"]).hex() == b["signature"], "bundle signature field")
    check(wire["key_id"] == hashlib.sha256(raw_public(collector)).hexdigest()[:16], "key id")
    digest = hashlib.sha256(b["bundle"].encode()).digest()
    for rel in v["releases"]:
        check(rel["bundle_sha256"] == digest.hex(), "release digest")
        signed(rel, collector, RELEASE + bytes([rel["shadow"]]) + rel["version"].to_bytes(4, "big") + digest)
    x = v["exemption_set"]
    body = bytes.fromhex(x["body"])
    signed(x, collector, EXEMPTIONS + body)
    check(reencode(body) == body, "exemption set re-encodes byte for byte")
    passed("vectors: bundle, releases and exemption set")

    n = v["notice"]
    notice_body = bytes.fromhex(n["body"])
    signed(n, collector, NOTICE + notice_body)
    check(reencode(notice_body) == notice_body, "notice re-encodes byte for byte")
    notice = parse(notice_body)
    check(one(notice, 2) == 2 and one(notice, 4) == 2, "notice version 2, once per version")
    a = v["notice_ack"]
    ack_body = bytes.fromhex(a["body"])
    signed(a, keys["agent"], NOTICE_ACK + ack_body)
    check(reencode(ack_body) == ack_body, "acknowledgement re-encodes byte for byte")
    ack = parse(ack_body)
    check(one(ack, 1).decode() == v["agent_id"], "acknowledgement agent id")
    check(one(ack, 5) == one(notice, 1) and one(ack, 6) == one(notice, 2), "group and version acknowledged")
    check(one(ack, 8) == hashlib.sha256(notice_body).digest(), "acknowledgement names the notice bytes shown")
    passed("vectors: monitoring notice and its acknowledgement")
