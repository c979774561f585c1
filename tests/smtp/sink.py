#!/usr/bin/env python3
"""A real SMTP server on loopback for the tests (aiosmtpd, Debian's
python3-aiosmtpd). Every message it accepts is written to OUT_DIR as
<n>.eml, with its envelope recipients in <n>.rcpt (written first).

usage: sink.py PORT OUT_DIR [--tls starttls|implicit --cert PEM --key PEM] [--auth USER:PASSWORD]
               [--reject ADDRESS]... [--refuse-sender-while FILE]
With --reject the server refuses that recipient for good (550) at RCPT TO.
With --refuse-sender-while it refuses every sender (553 at MAIL FROM, as a
server does for an address the login may not use) while FILE exists.
With --tls starttls the server refuses mail before STARTTLS; with --auth it
refuses mail before a successful AUTH (PLAIN or LOGIN), and writes the login
name of each message's session to <n>.auth.
Prints "ready" once it accepts connections; stops on SIGTERM or when its
standard input closes.
"""
import argparse
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out, reject=(), refuse_sender_while=None):
        self.out = out
        self.reject = {a.lower() for a in reject}
        self.refuse_sender_while = refuse_sender_while
        self.lock = threading.Lock()
        self.count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse_sender_while and os.path.exists(self.refuse_sender_while):
            return "553 5.7.1 <%s>: Sender address rejected: not owned by user" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            name = "%d-%03d" % (time.time_ns(), self.count)
        if session.auth_data is not None:
            with open(os.path.join(self.out, name + ".auth"), "w") as f:
                f.write(session.auth_data.login.decode() + "\n")
        with open(os.path.join(self.out, name + ".rcpt"), "w") as f:
            f.write("\n".join(envelope.rcpt_tos) + "\n")
        tmp = os.path.join(self.out, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.out, name + ".eml"))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("out")
    parser.add_argument("--tls", choices=["starttls", "implicit"])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--refuse-sender-while")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    params = {}
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    if args.tls == "starttls":
        params.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            # handled=False: aiosmtpd answers 535 itself on failure.
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        params.update(authenticator=authenticator, auth_required=True,
                      # aiosmtpd counts only STARTTLS as TLS; implicit TLS is TLS from the start.
                      auth_require_tls=args.tls == "starttls")
    controller = Controller(
        Handler(args.out, args.reject, args.refuse_sender_while), hostname="127.0.0.1", port=args.port,
        ssl_context=context if args.tls == "implicit" else None,
        server_hostname="127.0.0.1", **params)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
