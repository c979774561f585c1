#!/usr/bin/env python3
"""Parses one email with Python's email package and prints it as JSON:
headers, the MIME tree, and each leaf part decoded (text as text, other
content as base64). Fails on a message the parser reports defects in.

usage: parse.py FILE.eml
"""
import base64
import email
import email.policy
import json
import sys


def tree(part):
    if part.is_multipart():
        return {"type": part.get_content_type(), "parts": [tree(p) for p in part.iter_parts()]}
    return {"type": part.get_content_type()}


def main():
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    defects = [str(d) for p in msg.walk() for d in p.defects]
    leaves = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        entry = {
            "type": part.get_content_type(),
            "content_id": part.get("Content-ID", ""),
            "disposition": part.get_content_disposition() or "",
        }
        if part.get_content_maintype() == "text":
            entry["text"] = part.get_content()
        else:
            entry["base64"] = base64.b64encode(part.get_content()).decode()
        leaves.append(entry)
    print(json.dumps({
        "from": str(msg["From"]),
        "to": str(msg["To"]),
        "subject": str(msg["Subject"]),
        "message_id": str(msg["Message-ID"] or ""),
        "date": str(msg["Date"] or ""),
        "tree": tree(msg),
        "parts": leaves,
        "defects": defects,
    }))


if __name__ == "__main__":
    main()
