#!/usr/bin/env python3
"""Where a collector's heap goes, per connected agent, from a heaptrack profile.

    heaptrack_print -f heaptrack.tutela-collector.PID.zst \
        --flamegraph-cost-type peak -F stacks.txt
    python3 tests/profile/heap_by_part.py stacks.txt 3000

Each allocation alive at the heap's peak is put in the part of the
connection (or of the collector) nearest to it on its call stack: HTTP/2's
codec buffers and stream tables, TLS, the tasks the server spawns, the
collector's own per-stream state, SQLite's page cache. Prints each part's
bytes at the peak and per agent (the second argument: agents connected).
"""

import collections
import re
import sys

PARTS = [
    ("HTTP/2 write buffer (h2)", r"\(framed_write\.rs\)"),
    ("HTTP/2 read buffer (h2, tokio-util)", r"\(framed_impl\.rs\)"),
    ("HPACK decoder (h2)", r"\(decoder\.rs\)"),
    ("TLS read buffer (rustls)", r"prepare_read \(buffers\.rs\)"),
    ("TLS state and keys (rustls, tonic)", r"\((tls13|server_conn|handshake|key_schedule|conn|io_stream)\.rs\)"),
    ("ack channels (ingest)", r"\((chan|list|block|unbounded)\.rs\)"),
    ("gRPC codec buffers (tonic)", r"\((encode|decode)\.rs\)"),
    ("rules subscriptions", r"\(subscription\.rs\)"),
    ("HTTP/2 streams and frames (h2)", r"\((store|buffer|table|streams|prioritize|counts|recv|send|connection)\.rs\)"),
    ("SQLite page cache", r"sqlite3"),
    ("request bodies and services (tower, tonic)", r"\((body|box_body|boxed_clone|stack|router)\.rs\)"),
]


def task_part(frames):
    spawns = [i for i, f in enumerate(frames) if "spawn_inner" in f]
    caller = ";".join(frames[max(0, spawns[-1] - 14) : spawns[-1]]) if spawns else ""
    if "(ingest.rs)" in caller:
        return "task: each event stream (ingest)"
    if "execute_h2stream" in caller:
        return "task: each HTTP/2 stream (hyper)"
    if "select.rs" in caller or "serve" in caller:
        return "task: each connection (tonic, hyper)"
    return "task: other"


def main():
    path, agents = sys.argv[1], int(sys.argv[2])
    parts = collections.Counter()
    total = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        stack, _, cost = line.rstrip("\n").rpartition(" ")
        if not cost.isdigit():
            continue
        cost = int(cost)
        total += cost
        frames = stack.split(";")
        if any("bind_new_task" in f for f in frames):
            parts[task_part(frames)] += cost
            continue
        leaf_first = ";".join(reversed(frames))
        best, at = "other", len(leaf_first) + 1
        for name, pattern in PARTS:
            m = re.search(pattern, leaf_first)
            if m and m.start() < at:
                best, at = name, m.start()
        parts[best] += cost
    print(f"heap at its peak: {total / 1e6:.1f} MB, {agents} agents")
    for name, cost in parts.most_common():
        print(f"{name:45s} {cost / 1e6:7.2f} MB {cost / agents / 1024:6.2f} KiB per agent")


if __name__ == "__main__":
    main()
