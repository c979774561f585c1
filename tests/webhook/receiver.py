"""A webhook receiver on loopback for the webhook test: appends one JSON
line per POST (path, headers, body as text) to the file named on the
command line and answers 200, or 410 Gone for paths under /gone (a receiver
that refuses for good). Usage: receiver.py PORT FILE"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        with open(sys.argv[2], "a", encoding="utf-8") as out:
            out.write(json.dumps({
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8"),
            }) + "\n")
        self.send_response(410 if self.path.startswith("/gone") else 200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver)
print("READY", flush=True)
server.serve_forever()
