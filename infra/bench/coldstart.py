#!/usr/bin/env python3
"""Cold start, first-invocation time, peak RSS and binary size of each release binary.

Each function's release binary is started as Lambda starts it, against a minimal local Lambda Runtime API
(the three routes a function uses), with the environment template.yaml gives it and the AWS emulator
provisioned from the template. Measured per start:
  cold start  = process spawn -> its first `GET /runtime/invocation/next` (init done, ready for an event)
  first event = event handed over -> its response posted
  peak RSS    = VmHWM of the process after the first event
The webhook's init includes two Secrets Manager reads from the emulator over loopback; the worker's has no
I/O. Prints a table; asserts nothing (numbers go in the issue notes, not in tests).
"""
import argparse
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import threading
import time
import uuid

import stripe

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Runtime(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.reset()

    def reset(self):
        self.t_ready = None
        self.t_response = None
        self.response = None
        self.init_error = None
        self.served = threading.Event()
        self.done = threading.Event()
        self.calls = 0


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        s = self.server
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        s.calls += 1
        if s.calls > 1:
            s.done.wait(30)  # park the second poll: the process is killed after the first event
            try:
                self.send_error(500)
            except OSError:
                pass  # the process is gone, as intended
            return
        s.t_ready = time.perf_counter()
        body = json.dumps(s.event).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        s.served.set()

    def do_POST(self):
        s = self.server
        length = int(self.headers.get("Content-Length", 0))
        payload = self.rfile.read(length)
        if "/init/error" in self.path:
            s.init_error = payload.decode(errors="replace")
        else:
            s.t_response = time.perf_counter()
            s.response = payload.decode(errors="replace")
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        s.done.set()


def stripe_event(secret):
    sample = json.loads((ROOT / "events/stripe/02-order-a-payment-succeeded.json").read_text())
    body = sample["body"].replace("evt_1NexDemoA02", f"evt_bench_{uuid.uuid4().hex}")
    sample["body"] = body
    sample["headers"]["stripe-signature"] = stripe.WebhookSignature.generate_signature_header(body, secret)
    return sample


def whatsapp_event(app_secret):
    import hashlib
    import hmac
    body = json.loads((ROOT / "events/whatsapp/02-inbound-text.json").read_text())["body"]
    body = body.replace("wamid.", f"wamid.bench{uuid.uuid4().hex}")
    sig = "sha256=" + hmac.new(app_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    event = json.loads((ROOT / "events/stripe/02-order-a-payment-succeeded.json").read_text())
    event.update({"routeKey": "POST /webhooks/whatsapp", "rawPath": "/webhooks/whatsapp", "body": body})
    event["requestContext"]["http"]["path"] = "/webhooks/whatsapp"
    event["headers"] = {"content-type": "application/json", "x-hub-signature-256": sig}
    return event


def sqs_of(kind, payload):
    envelope = {"type": kind, "version": 1, "id": f"bench-{uuid.uuid4().hex}", "occurred_at": "2026-11-24T00:00:00Z",
                "trace_id": "bench", "payload": payload}
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "bench", "body": json.dumps(envelope),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench", "awsRegion": "us-east-1",
    }]}


def inbound_event():
    return sqs_of("whatsapp.inbound_message", {
        "merchant": "merchant-demo-1", "phone_number_id": "106540352242922", "wamid": f"wamid.bench{uuid.uuid4().hex}",
        "subjects": [uuid.uuid4().hex], "phone": None, "bsuid": None, "kind": "text", "text": "hello",
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "keyword": None})


def send_request_event():
    return sqs_of("notification.send_request", {
        "id": f"bench-{uuid.uuid4().hex}", "merchant": "merchant-demo-1", "phone_number_id": "106540352242922",
        "to": "+31600000000", "content": {"type": "template", "name": "not_registered", "language": "en"},
        "own_order": True, "order_open": True})


def sqs_event():
    return sqs_of("stripe.payment_event", {
        "event_id": f"evt_bench_{uuid.uuid4().hex}", "event_type": "payment_intent.succeeded",
        "api_version": "2020-08-27", "created": int(time.time()), "payment_key": f"pi_bench_{uuid.uuid4().hex}",
        "order_ref": None, "fact": {"kind": "succeeded"}, "amount": 2000, "currency": "usd",
        "card": {"brand": "visa", "last4": "4242"}, "subject": None,
    })


def measure(binary, env, make_event):
    rt = Runtime(make_event())
    threading.Thread(target=rt.serve_forever, daemon=True).start()
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": binary.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "RUST_LOG": "warn",
    })
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(binary)], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not rt.done.wait(30) or rt.init_error:
            raise RuntimeError(f"{binary.name}: no response (init error: {rt.init_error}; stderr: {proc.stderr.read(2000) if proc.poll() is not None else ''})")
        rss_kb = None
        for line in pathlib.Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss_kb = int(line.split()[1])
        return {"cold_ms": (rt.t_ready - t0) * 1000, "first_ms": (rt.t_response - rt.t_ready) * 1000,
                "rss_mb": rss_kb / 1024, "response": rt.response}
    finally:
        proc.kill()
        proc.wait()
        rt.done.set()
        rt.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    m = json.loads(pathlib.Path(a.manifest).read_text())
    secret = json.loads(json.loads((ROOT / "infra/local/dev-secrets.json").read_text())["StripeWebhookSecret"])["endpoint_secrets"][0]
    rows = []
    seeds = json.loads((ROOT / "infra/local/dev-secrets.json").read_text())
    app_secret = json.loads(seeds["WhatsAppAppSecret"])["app_secrets"][0]
    functions = (
        ("StripeWebhookFunction", lambda: stripe_event(secret)),
        ("PaymentsWorkerFunction", sqs_event),
        ("WhatsAppWebhookFunction", lambda: whatsapp_event(app_secret)),
        ("MessagingWorkerFunction", inbound_event),
        # Refused for an unregistered template: the whole decision path, no call to the Cloud API.
        ("NotificationsSenderFunction", send_request_event),
        # The scheduled run on the (empty) stack: the first reads its 35-day lookback, later ones two days.
        ("RetentionSweepFunction", lambda: json.loads((ROOT / "events/schedule/retention-sweep.json").read_text())),
        # A request this stack never opened: the worker reports the record as failed.
        ("DataRequestsWorkerFunction", lambda: json.loads((ROOT / "events/sqs/data-requests-worker-batch.json").read_text())),
        # An opt-in with the local merchant's key .
        ("ConsentApiFunction", lambda: json.loads((ROOT / "events/http/consent-opt-in.json").read_text())),
        # Two references to ledger entries this stack never recorded and one that is not a reference.
        ("AuditAppenderFunction", lambda: json.loads((ROOT / "events/sqs/audit-appender-batch.json").read_text())),
        # Forwarding: references to an event and a payment this stack never held (nothing to forward), a job
        # for a delivery it never made (stale), and the minute's due-index read.
        ("WebhookDispatcherFunction", lambda: json.loads((ROOT / "events/sqs/webhook-dispatcher-batch.json").read_text())),
        ("WebhookSenderFunction", lambda: json.loads((ROOT / "events/sqs/webhook-sender-batch.json").read_text())),
        ("WebhookSchedulerFunction", lambda: json.loads((ROOT / "events/schedule/webhook-scheduler.json").read_text())),
        # Insights: the schedule over an empty account list, and a pull of an account this stack never added.
        ("InsightsSchedulerFunction", lambda: json.loads((ROOT / "events/schedule/insights-scheduler.json").read_text())),
        ("InsightsPullerFunction", lambda: {"Records": json.loads((ROOT / "events/sqs/insights-puller-batch.json").read_text())["Records"][:1]}),
    )
    for names, make_event in functions:
        logical = next((n for n in names.split("|") if n in m["functions"]), None)
        if logical is None:
            continue
        spec = m["functions"][logical]
        binary = pathlib.Path(a.target_dir) / "release" / spec["binary"]
        results = [measure(binary, spec["env"], make_event) for _ in range(a.runs)]
        sample = results[0]["response"]
        rows.append((spec["binary"], binary.stat().st_size / 1e6, [r["cold_ms"] for r in results],
                     [r["first_ms"] for r in results], max(r["rss_mb"] for r in results), sample[:60]))
    print(f"\n{'function':<21} {'size MB':>8} {'cold start ms (median / min / max)':>36} {'1st event ms (median)':>22} {'peak RSS MB':>12}  response")
    for name, size, cold, first, rss, sample in rows:
        print(f"{name:<21} {size:>8.2f} {statistics.median(cold):>16.1f} / {min(cold):>6.1f} / {max(cold):>6.1f} "
              f"{statistics.median(first):>22.1f} {rss:>12.1f}  {sample}")
    print(f"\n{a.runs} starts each; x86_64 release build of this machine (Lambda runs the arm64 build of the same code).")


if __name__ == "__main__":
    main()
