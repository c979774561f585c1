#!/usr/bin/env python3
"""A second, independent Tutela agent, written from docs/PROTOCOL.md alone.

It shares no code with the Rust agent: protobuf messages are encoded and
decoded by hand from the field numbers of tutela.proto, signatures are made
with the `cryptography` package, and gRPC is spoken through `grpcio` with
raw bytes. It runs against a real collector on loopback:

    tutela_client.py run TOKEN STATE EXPIRING REVOKED
                                            enrol, subscribe, send, re-key, refusals
                                            (EXPIRING: a token valid for a second;
                                            REVOKED: a revoked token)
    tutela_client.py unavailable TOKEN SPARE STATE
                                            enrols a spare identity with SPARE, prints
                                            READY, waits for a line: then, with the
                                            collector's store locked, every write is
                                            refused with UNAVAILABLE, nothing kept
    tutela_client.py revoked TOKEN STATE    after `agents revoke`: every path refused
    tutela_client.py stopping TOKEN         enrols, subscribes, prints READY once the
                                            stream's first update arrived; when the
                                            collector stops, the stream ends UNAVAILABLE
    tutela_client.py vectors FILE           docs/protocol-vectors.json, rebuilt here

Each case prints `PASS <case>`; the first failure exits with status 1.
"""

import hashlib
import json
import os
import sys
import time

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tutela_vectors import check_vectors
from tutela_wire import (
    Agent,
    Collector,
    Failure,
    check,
    passed,
    msg,
    parse,
    one,
    signed_int,
    new_key,
    raw_public,
    raw_private,
    rekey_bytes,
    now_ms,
    read_token,
    pinned_channel,
    refused,
    stream_refused,
    enrol_request,
    bundle_verifies,
    exemptions_verify,
    notice_verify,
    NOTICE_ACK,
)


# Re-keys a family may have in all (PROTOCOL.md, Rekey refusals).
REKEY_FAMILY_LIMIT = 500


# --- the scenarios


def token_cases(collector, expiring_text, revoked_text):
    C = grpc.StatusCode
    revoked_token = read_token(revoked_text)
    refused(
        lambda: collector.enrol(enrol_request(revoked_token["secret"], new_key())),
        C.PERMISSION_DENIED,
        "enrol: a revoked token is refused",
    )
    expiring = read_token(expiring_text, now=0)  # read whether or not it has expired yet
    while now_ms() <= expiring["expires_ms"]:
        time.sleep(0.1)
    refused(
        lambda: collector.enrol(enrol_request(expiring["secret"], new_key())),
        C.FAILED_PRECONDITION,
        "enrol: an expired token is refused",
    )
    refused(
        lambda: collector.enrol(enrol_request("s" * 257, new_key())),
        C.INVALID_ARGUMENT,
        "enrol: a secret over 256 bytes is refused",
    )
    refused(
        lambda: collector.enrol(enrol_request("s", new_key(), station="x" * (65 * 1024))),
        C.OUT_OF_RANGE,
        "enrol: a request over 64 KiB is refused by the gRPC layer",
    )


def enrolment_cases(collector, token):
    C = grpc.StatusCode
    key = new_key()
    weak = bytes([1]) + bytes(31)  # the identity point: small order
    refused(
        lambda: collector.enrol(enrol_request(token["secret"], key, public=weak)),
        C.INVALID_ARGUMENT,
        "enrol: a weak key is refused",
    )
    refused(
        lambda: collector.enrol(enrol_request(token["secret"], key, proof_key=new_key())),
        C.UNAUTHENTICATED,
        "enrol: a proof by another key is refused",
    )
    refused(
        lambda: collector.enrol(enrol_request("0" * 48, key)),
        C.PERMISSION_DENIED,
        "enrol: an unknown token is refused",
    )
    reply = collector.enrol(enrol_request(token["secret"], key))
    agent_id = one(reply, 1, b"").decode()
    group = one(reply, 2, b"").decode()
    bundle_key = one(reply, 3, b"")
    check(agent_id and len(bundle_key) == 32, "enrol reply")
    passed("enrol: a device enrols with its token")
    refused(
        lambda: collector.enrol(enrol_request(token["secret"], new_key())),
        C.FAILED_PRECONDITION,
        "enrol: a used token is refused",
    )
    return Agent(agent_id, key), group, bundle_key


def rules_cases(collector, agent, group, bundle_key):
    updates = collector.subscribe(agent.subscription(), 4)
    bundles = [one(u, 1) for u in updates if 1 in u]
    sets = [one(u, 3) for u in updates if 3 in u]
    notices = [one(u, 4) for u in updates if 4 in u]
    check(len(bundles) == 2 and len(sets) == 1, f"live, shadow and exemptions: {updates}")
    check(len(notices) == 1, f"the group's notice: {updates}")
    notice_cases(collector, agent, group, bundle_key, notices[0])
    roles = sorted(bundle_verifies(bundle_key, parse(b)) for b in bundles)
    check(None not in roles, "both bundles verify")
    check([r[2] for r in roles] == [False, True], f"one live, one shadow: {roles}")
    passed("rules: live and shadow bundles verify, release signatures included")
    live = parse(bundles[0])
    flipped = dict(live)
    flipped[3] = [0 if one(live, 3, 0) else 1]
    check(bundle_verifies(bundle_key, flipped) is None, "a flipped role is refused")
    passed("rules: a bundle whose shadow flag was flipped does not verify")
    held = exemptions_verify(bundle_key, sets[0], group)
    check(held is not None, "the exemption set verifies")
    check(
        [e["category"] for e in held["exemptions"]] == ["drugs"]
        and held["exemptions"][0]["group"] == group,
        f"the group's exemption: {held}",
    )
    check(exemptions_verify(bundle_key, sets[0], "another-group") is None, "another group's set")
    passed("rules: the group's exemption set verifies")
    C = grpc.StatusCode
    refused(
        lambda: collector.subscribe(agent.subscription(bare=True), 1),
        C.UNAUTHENTICATED,
        "rules: a subscription signed over the bare body is refused",
    )
    stranger = Agent("ag-000000000000", new_key())
    refused(lambda: collector.subscribe(stranger.subscription(), 1), C.NOT_FOUND,
            "rules: an unenrolled agent's subscription is refused")
    refused(lambda: collector.subscribe(msg((1, b"\xff\xff"), (2, bytes(64))), 1), C.INVALID_ARGUMENT,
            "rules: a body that is not a SubscribeBody is refused")
    big = msg((1, msg((1, agent.agent_id), (3, now_ms()), (15, b"x" * 5000))), (2, bytes(64)))
    refused(lambda: collector.subscribe(big, 1), C.RESOURCE_EXHAUSTED,
            "rules: a subscription over 4,096 bytes is refused")


def notice_cases(collector, agent, group, bundle_key, signed):
    notice = notice_verify(bundle_key, signed, group)
    check(notice is not None and notice["version"] == 1, f"the notice verifies: {notice}")
    check(notice_verify(bundle_key, signed, "another-group") is None, "another group's notice")
    passed("notice: the group's monitoring notice verifies")
    shown = hashlib.sha256(notice["body"]).digest()

    def ack(version=1, sha=shown, ack_id=None, domain=NOTICE_ACK):
        body = msg((1, agent.agent_id), (2, ack_id or os.urandom(16).hex()), (3, "pupil.py"),
                   (4, "PY-LAB-01"), (5, group), (6, version), (7, now_ms()), (8, sha))
        return msg((1, body), (2, agent.key.sign(domain + body)))

    first = ack(ack_id="py-ack-1")
    check(one(collector.acknowledge(first), 1, 0) == 1, "stored")
    check(one(collector.acknowledge(first), 1, 0) == 0, "a resend is not stored twice")
    passed("notice: an acknowledgement is stored once")
    C = grpc.StatusCode
    refused(lambda: collector.acknowledge(ack(version=9)), C.FAILED_PRECONDITION,
            "notice: an acknowledgement of a version that does not exist is refused")
    refused(lambda: collector.acknowledge(ack(sha=bytes(32))), C.FAILED_PRECONDITION,
            "notice: an acknowledgement of other text is refused")
    refused(lambda: collector.acknowledge(ack(domain=b"")), C.UNAUTHENTICATED,
            "notice: an acknowledgement signed over the bare body is refused")


def event_cases(collector, agent):
    C = grpc.StatusCode
    zero = bytes(32)
    b1 = agent.body(1, zero)
    jpeg = b"\xff\xd8\xff\xe0 python capture \xff\xd9"
    b2 = agent.body(2, hashlib.sha256(b1).digest(), capture=jpeg)
    acks, error = collector.stream([agent.event(b1), agent.event(b2, jpeg)])
    check(error is None and acks and acks[-1] == (agent.agent_id, 2, 1), f"acks {acks} {error}")
    passed("events: two events stored, the last acknowledgement covers both")
    acks, error = collector.stream([agent.event(b2, jpeg)])
    check(error is None and acks == [(agent.agent_id, 2, 2)], f"duplicate {acks} {error}")
    passed("events: a resend is acknowledged as a duplicate")
    b5 = agent.body(5, os.urandom(32))
    acks, error = collector.stream([agent.event(b5)])
    check(error is None and acks == [(agent.agent_id, 5, 1)], f"gap {acks} {error}")
    passed("events: a jump in sequence numbers is stored (a gap)")
    b6 = agent.body(6, os.urandom(32))  # not the hash of event 5: stored, chain flagged
    acks, error = collector.stream([agent.event(b6)])
    check(error is None and acks == [(agent.agent_id, 6, 1)], f"broken chain {acks} {error}")
    passed("events: a broken previous hash is stored, not refused")
    prev = hashlib.sha256(b6).digest()
    stream_refused(collector, [agent.event(agent.body(3, zero))], C.FAILED_PRECONDITION,
                   "events: an event below a gap is out of order", "3")
    stream_refused(collector, [agent.event(agent.body(2, zero))], C.ALREADY_EXISTS,
                   "events: a stored number with other content", "2")
    stream_refused(collector, [agent.event(agent.body(7, prev), key=new_key())], C.UNAUTHENTICATED,
                   "events: a forged signature", None)
    stream_refused(collector, [agent.event(agent.body(7, prev), bare=True)], C.UNAUTHENTICATED,
                   "events: a protocol 1 signature (bare body)", None, "version 1")
    stream_refused(collector, [agent.event(agent.body(7, prev, matches=33))], C.INVALID_ARGUMENT,
                   "events: 33 matches", "7", "33 matches")
    stream_refused(collector, [agent.event(agent.body(7, prev, title="t" * 2049))], C.INVALID_ARGUMENT,
                   "events: a 2,049-byte window title", "7", "window title")
    stream_refused(collector, [agent.event(agent.body(7, prev[:31]))], C.INVALID_ARGUMENT,
                   "events: a previous hash of 31 bytes", "7", "prev_hash")
    stream_refused(collector, [agent.event(agent.body(7, prev, event_id="e" * 65))], C.INVALID_ARGUMENT,
                   "events: an event id over 64 bytes", "7", "event_id")
    stream_refused(collector, [agent.event(agent.body(0, prev))], C.INVALID_ARGUMENT,
                   "events: sequence number 0", "0")
    stream_refused(collector, [agent.event(agent.body(7, prev, capture=jpeg, size=len(jpeg) + 1), jpeg)],
                   C.DATA_LOSS, "events: a capture shorter than its signed size", "7", "signed size")
    stream_refused(collector, [agent.event(agent.body(7, prev, capture=jpeg), jpeg[:-1] + b"\x00")],
                   C.DATA_LOSS, "events: a capture with another SHA-256", "7", "SHA-256")
    stream_refused(collector, [agent.event(agent.body(7, prev), jpeg)], C.INVALID_ARGUMENT,
                   "events: an undeclared capture", "7")
    stream_refused(collector, [agent.event(agent.body(7, prev, context="x" * 70000))],
                   C.RESOURCE_EXHAUSTED, "events: a body over 64 KiB", None)
    stream_refused(collector, [msg((1, b"\xff\xff\xff"), (2, bytes(64)))], C.INVALID_ARGUMENT,
                   "events: a body that is not an EventBody", None)
    stranger = Agent("ag-000000000000", new_key())
    stream_refused(collector, [stranger.event(stranger.body(1, zero))], C.NOT_FOUND,
                   "events: an unenrolled agent", None)
    # After all those refusals the agent carries on where it was.
    b7 = agent.body(7, prev)
    acks, error = collector.stream([agent.event(b7)])
    check(error is None and acks == [(agent.agent_id, 7, 1)], f"carry on {acks} {error}")
    passed("events: the agent carries on after the refusals")
    return hashlib.sha256(b7).digest()


def submit_cases(collector, agent, prev):
    """Ingest/Submit: the events of one stream in one call (PROTOCOL.md)."""
    C = grpc.StatusCode
    b8 = agent.body(8, prev)
    b9 = agent.body(9, hashlib.sha256(b8).digest())
    ack, code, _, seq = collector.submit([agent.event(b8), agent.event(b9)])
    check(ack == (agent.agent_id, 9, 1) and code == 0 and seq == 0, f"submit {ack} {code} {seq}")
    passed("submit: a batch is stored, the acknowledgement covers it")
    ack, code, _, _ = collector.submit([agent.event(b9)])
    check(ack == (agent.agent_id, 9, 2) and code == 0, f"submit duplicate {ack} {code}")
    passed("submit: a resent event is acknowledged as a duplicate")
    other = agent.body(9, hashlib.sha256(b8).digest(), context="I will hurt myself again")
    ack, code, message, seq = collector.submit([agent.event(other)])
    check(ack is None and code == C.ALREADY_EXISTS.value[0] and seq == 9,
          f"submit conflict {ack} {code} {message} {seq}")
    passed("submit: a stored number with other content is refused in the reply, with its seq")
    b10 = agent.body(10, hashlib.sha256(b9).digest())
    ack, code, message, seq = collector.submit([agent.event(b10, key=new_key())])
    check(ack is None and code == C.UNAUTHENTICATED.value[0] and seq == 0,
          f"submit forged {ack} {code} {message} {seq}")
    passed("submit: a forged signature is refused in the reply, without a seq")
    many = [agent.event(agent.body(10 + i, bytes(32))) for i in range(257)]
    refused(lambda: collector.submit(many), C.RESOURCE_EXHAUSTED, "submit: 257 events are refused whole")
    refused(lambda: parse(collector.unary("/tutela.v1.Ingest/Submit", b"\xff\xff\xff")),
            C.INTERNAL, "submit: a message that is not an EventBatch (the gRPC layer)",
            contains="failed to decode Protobuf message")
    return hashlib.sha256(b9).digest()


def heartbeat_cases(collector, agent):
    C = grpc.StatusCode
    fresh = agent.heartbeat()
    reply = collector.heartbeat(fresh)
    check(abs(signed_int(one(reply, 1, 0)) - now_ms()) < 60_000, f"server time {reply}")
    check(not one(reply, 3, 0), "no re-key asked")
    passed("heartbeat: accepted, with the collector's time")
    refused(lambda: collector.heartbeat(fresh), C.ALREADY_EXISTS, "heartbeat: a replay is refused")
    refused(lambda: collector.heartbeat(agent.heartbeat(time_ms=now_ms() - 86_400_000)),
            C.FAILED_PRECONDITION, "heartbeat: a day-old heartbeat is stale")
    refused(lambda: collector.heartbeat(agent.heartbeat(bare=True)), C.UNAUTHENTICATED,
            "heartbeat: a protocol 1 signature is refused")
    stranger = Agent("ag-000000000000", new_key())
    refused(lambda: collector.heartbeat(stranger.heartbeat()), C.NOT_FOUND,
            "heartbeat: an unenrolled agent")
    refused(lambda: collector.heartbeat(msg((1, b"\xff\xff"), (2, bytes(64)))), C.INVALID_ARGUMENT,
            "heartbeat: a body that is not a HeartbeatBody")
    big = msg((1, msg((1, agent.agent_id), (2, now_ms()), (3, "v" * 70000))), (2, bytes(64)))
    refused(lambda: collector.heartbeat(big), C.RESOURCE_EXHAUSTED, "heartbeat: a body over 64 KiB")
    collector.heartbeat(agent.heartbeat())
    passed("heartbeat: a newer heartbeat is accepted")
    # Problems for the technician: more than 8, one over 256 bytes, one with a new line; the
    # heartbeat is accepted (the collector shortens them; the test reads what it kept).
    problems = ["captures failing", "line one\nline two", "x" * 300] + [f"p{i}" for i in range(4, 11)]
    collector.heartbeat(agent.heartbeat(problems=problems))
    passed("heartbeat: one reporting ten problems is accepted")


def rekey_request(agent, new, time_ms=None, old_key=None, new_public=None):
    time_ms = now_ms() if time_ms is None else time_ms
    new_public = raw_public(new) if new_public is None else new_public
    message = rekey_bytes(agent.agent_id, new_public, time_ms)
    return msg(
        (1, agent.agent_id), (2, new_public), (3, "PY-LAB-02"), (4, ""), (5, "interop-0.1"),
        (6, time_ms), (7, "machine-id-changed"),
        (8, (old_key or agent.key).sign(message)), (9, new.sign(message)),
    )


def rekey_cases(collector, agent):
    C = grpc.StatusCode
    new = new_key()
    refused(lambda: collector.rekey(rekey_request(agent, new, old_key=new_key())), C.UNAUTHENTICATED,
            "rekey: the old key's signature must verify")
    refused(lambda: collector.rekey(rekey_request(agent, new, time_ms=now_ms() - 3_600_000)),
            C.FAILED_PRECONDITION, "rekey: a request an hour old is refused")
    refused(lambda: collector.rekey(rekey_request(agent, new, new_public=bytes([1]) + bytes(31))),
            C.INVALID_ARGUMENT, "rekey: a weak new key is refused")
    reply = collector.rekey(rekey_request(agent, new))
    successor = Agent(one(reply, 1, b"").decode(), new)
    check(successor.agent_id and successor.agent_id != agent.agent_id, "a new identity")
    passed("rekey: both keys sign, a new identity is given")
    refused(lambda: collector.rekey(rekey_request(agent, new)), C.ALREADY_EXISTS,
            "rekey: a key already enrolled is refused")
    acks, error = collector.stream([successor.event(successor.body(1, bytes(32)))])
    check(error is None and acks == [(successor.agent_id, 1, 1)], f"new identity sends {acks} {error}")
    passed("rekey: the new identity's events are stored")
    # The family (the first identity and every identity re-keyed from it or from
    # those) has one re-key; it may have REKEY_FAMILY_LIMIT in all, then no more.
    for _ in range(REKEY_FAMILY_LIMIT - 1):
        collector.rekey(rekey_request(successor, new_key()))
    passed(f"rekey: a family re-keys {REKEY_FAMILY_LIMIT} times in all")
    refused(lambda: collector.rekey(rekey_request(successor, new_key())), C.RESOURCE_EXHAUSTED,
            f"rekey: a family with {REKEY_FAMILY_LIMIT} re-keys is refused another")
    return successor


def run(token_text, state_path, expiring_text, revoked_text):
    token = read_token(token_text)
    passed("token: read from the document's format")
    collector = Collector(pinned_channel(token["collector"], token["fingerprint"]))
    token_cases(collector, expiring_text, revoked_text)
    agent, group, bundle_key = enrolment_cases(collector, token)
    rules_cases(collector, agent, group, bundle_key)
    last_hash = submit_cases(collector, agent, event_cases(collector, agent))
    heartbeat_cases(collector, agent)
    successor = rekey_cases(collector, agent)
    with open(state_path, "w") as f:
        json.dump(
            {
                "agent_id": agent.agent_id,
                "key": raw_private(agent.key).hex(),
                "last_hash": last_hash.hex(),
                "successor": successor.agent_id,
                "successor_key": raw_private(successor.key).hex(),
            },
            f,
        )


def unavailable(token_text, spare_text, state_path):
    """The collector cannot write its store: each write says UNAVAILABLE (retry).

    A spare identity enrols first (its family has no re-keys yet); the client
    then prints `READY` and waits for a line on standard input, sent once the
    store's write lock is held by another connection."""
    C = grpc.StatusCode
    token = read_token(token_text)
    spare_token = read_token(spare_text)
    with open(state_path) as f:
        state = json.load(f)
    collector = Collector(pinned_channel(token["collector"], token["fingerprint"]))
    spare_key = new_key()
    spare = Agent(one(collector.enrol(enrol_request(spare_token["secret"], spare_key)), 1, b"").decode(),
                  spare_key)
    print("READY", flush=True)
    sys.stdin.readline()
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(state["successor_key"]))
    agent = Agent(state["successor"], key)
    refused(lambda: collector.enrol(enrol_request(token["secret"], new_key())), C.UNAVAILABLE,
            "unavailable: enrolment is refused, to be retried")
    stream_refused(collector, [agent.event(agent.body(2, bytes(32)))], C.UNAVAILABLE,
                   "unavailable: events are refused, to be resent")
    refused(lambda: collector.heartbeat(agent.heartbeat()), C.UNAVAILABLE,
            "unavailable: heartbeats are refused")
    refused(lambda: collector.rekey(rekey_request(spare, new_key())), C.UNAVAILABLE,
            "unavailable: a re-key is refused, to be retried")


def revoked(token_text, state_path):
    C = grpc.StatusCode
    token = read_token(token_text)
    with open(state_path) as f:
        state = json.load(f)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(state["key"]))
    agent = Agent(state["agent_id"], key)
    collector = Collector(pinned_channel(token["collector"], token["fingerprint"]))
    body = agent.body(10, bytes.fromhex(state["last_hash"]))
    stream_refused(collector, [agent.event(body)], C.PERMISSION_DENIED, "revoked: events are refused")
    refused(lambda: collector.heartbeat(agent.heartbeat()), C.PERMISSION_DENIED,
            "revoked: heartbeats are refused")
    refused(lambda: collector.subscribe(agent.subscription(), 1), C.PERMISSION_DENIED,
            "revoked: subscriptions are refused")
    refused(lambda: collector.enrol(enrol_request(token["secret"], key)), C.PERMISSION_DENIED,
            "revoked: the revoked key cannot enrol again")


def stopping(token_text):
    """An open rule stream ends with UNAVAILABLE when the collector stops."""
    token = read_token(token_text)
    collector = Collector(pinned_channel(token["collector"], token["fingerprint"]))
    key = new_key()
    agent = Agent(one(collector.enrol(enrol_request(token["secret"], key)), 1, b"").decode(), key)
    updates, error = collector.subscribe_to_end(agent.subscription(), 1,
                                                lambda: print("READY", flush=True))
    check(len(updates) >= 1, f"stopping: the stream's first update arrived: {updates}")
    check(error is not None, "stopping: the stream ended with no status, expected UNAVAILABLE")
    check(error.code() == grpc.StatusCode.UNAVAILABLE,
          f"stopping: expected UNAVAILABLE, got {error.code()} {error.details()}")
    check("stopping" in (error.details() or ""),
          f"stopping: {error.details()!r} says the collector is stopping")
    passed("stopping: an open rule stream ends with UNAVAILABLE when the collector stops")


def main(argv):
    try:
        {"run": run, "unavailable": unavailable, "revoked": revoked, "stopping": stopping,
         "vectors": check_vectors}[argv[1]](*argv[2:])
    except Failure as e:
        print(f"FAIL {e}", flush=True)
        return 1
    print("all cases passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
