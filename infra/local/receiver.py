"""A merchant's webhook endpoint, for the tests and the local stack: verifies every delivery with the
reference Standard Webhooks verifier (the `standardwebhooks` package from PyPI), as a real receiver would,
and answers as it is told to.

    receiver.py --port 0 --port-file F      serves on 127.0.0.1, writes its port to F

Hooks are named: deliveries go to `POST /hooks/<name>`. Each hook is set with
`PUT /_control/<name>` and a JSON body:
    {"secrets": ["whsec_..."],          the secrets it verifies with (any one may match)
     "answers": ["fail", "429:120"],    the next answers, in order, then `default`
     "default": "ok"}
Answers: `ok` (204), `fail` (500), `gone` (410), `429:<secs>` (429 with Retry-After), `503:<secs>`,
`abort` (400 with `webhook-delivery: abort-message`), `slow:<secs>` (answers 200 after that long).
A delivery that does not verify is answered 401.
`GET /_control/<name>` answers what it received: id, timestamp, whether it verified, with which secret
(index), how many signatures came, the body (parsed), when it started and ended (epoch ms).
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
HOOKS = {}


def hook(name):
    return HOOKS.setdefault(name, {"secrets": [], "answers": [], "default": "ok", "received": []})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_PUT(self):
        if not self.path.startswith("/_control/"):
            return self.answer(404)
        spec = json.loads(self.body() or b"{}")
        with LOCK:
            h = hook(self.path[len("/_control/"):])
            h["secrets"] = spec.get("secrets", h["secrets"])
            h["answers"] = list(spec.get("answers", []))
            h["default"] = spec.get("default", "ok")
        self.answer(204)

    def do_GET(self):
        if not self.path.startswith("/_control/"):
            return self.answer(404)
        with LOCK:
            h = hook(self.path[len("/_control/"):])
            out = json.dumps({"received": h["received"]}).encode()
        self.answer(200, out, {"content-type": "application/json"})

    def do_POST(self):
        if not self.path.startswith("/hooks/"):
            return self.answer(404)
        started = int(time.time() * 1000)
        raw = self.body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            h = hook(self.path[len("/hooks/"):])
            secrets = list(h["secrets"])
            answer = h["answers"].pop(0) if h["answers"] else h["default"]
        verified_with = None
        for i, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(raw, headers)
                verified_with = i
                break
            except WebhookVerificationError:
                continue
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        entry = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "verified": verified_with is not None,
            "verified_with": verified_with,
            "signatures": len((headers.get("webhook-signature") or "").split()),
            "body": body,
            "answer": answer if verified_with is not None else "unverified",
            "started_ms": started,
        }
        with LOCK:
            h["received"].append(entry)
        if verified_with is None:
            entry["ended_ms"] = int(time.time() * 1000)
            return self.answer(401, b"signature not verified")
        kind, _, arg = answer.partition(":")
        if kind == "slow":
            time.sleep(float(arg or 20))
        entry["ended_ms"] = int(time.time() * 1000)
        try:
            if kind in ("ok", "slow"):
                self.answer(204 if kind == "ok" else 200)
            elif kind == "fail":
                self.answer(500, b"boom")
            elif kind == "gone":
                self.answer(410)
            elif kind in ("429", "503"):
                self.answer(int(kind), b"", {"retry-after": arg or "60"})
            elif kind == "abort":
                self.answer(400, b"", {"webhook-delivery": "abort-message"})
            else:
                self.answer(500, b"unknown answer")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (its timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--parent-pid", type=int, help="exit when this process is gone (the tests' runner)")
    args = ap.parse_args()
    if args.parent_pid:
        import os

        def watch():
            while True:
                try:
                    os.kill(args.parent_pid, 0)
                except OSError:
                    os._exit(0)
                time.sleep(1)

        threading.Thread(target=watch, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os

        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
