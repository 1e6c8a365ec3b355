#!/usr/bin/env python3
"""Show forwarding in the local suite: the demo merchant's own system (infra/local/receiver.py, which checks
every delivery with the reference `standardwebhooks` verifier from PyPI) receives its marketplace orders and
its storefront's payment changes, signed; its first answer is a failure, and the retry succeeds.

    forwarding_demo.py setup  --manifest M --url U   starts the receiver, registers the merchant's endpoint
    forwarding_demo.py report --manifest M --url U   a storefront payment, then what the endpoint received
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATE = ROOT / "infra/.local"
KEY = "local-dev-merchant-api-key"
MERCHANT = "merchant-demo-1"


def call(method, url, body=None, key=None, headers=None):
    h = {"content-type": "application/json", **(headers or {})}
    if key:
        h["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def setup(args):
    port_file = STATE / "receiver.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(ROOT / "infra/local/receiver.py"), "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=open(STATE / "receiver.log", "w"))
    (STATE / "receiver.pid").write_text(str(proc.pid))
    for _ in range(100):
        if port_file.exists():
            break
        time.sleep(0.1)
    receiver = f"http://127.0.0.1:{port_file.read_text()}"
    print(f"\n== forwarding: the demo merchant's system at {receiver}/hooks/back-office (verifies with standardwebhooks)")
    status, ep = call("POST", f"{args.url}/endpoints", {
        "url": f"{receiver}/hooks/back-office",
        "event_types": ["order.created", "order.updated", "payment.updated"],
        "description": "demo back office",
    }, KEY)
    assert status == 201, (status, ep)
    print(f"  endpoint registered: {ep['id']} for {', '.join(ep['event_types'])}; secret shown once: {ep['secret'][:10]}...")
    status, refused = call("POST", f"{args.url}/endpoints", {"url": "https://169.254.169.254/latest", "event_types": ["order.created"]}, KEY)
    print(f"  an endpoint at the metadata address -> {status} {refused.get('reason')}")
    # The merchant's system fails its first answer, then recovers.
    call("PUT", f"{receiver}/_control/back-office", {"secrets": [ep["secret"]], "answers": ["fail"], "default": "ok"})
    (STATE / "forwarding.json").write_text(json.dumps({"receiver": receiver, "endpoint": ep["id"]}))


def stripe_payment(args):
    """One storefront payment of merchant-demo-1, signed with the local secret by Stripe's own library."""
    import stripe

    seeds = json.loads((ROOT / "infra/local/dev-secrets.json").read_text())
    secret = json.loads(seeds["StripeWebhookSecret"])["endpoint_secrets"][0]
    now = int(time.time())
    event = {
        "id": f"evt_1NexForward{now}", "object": "event", "api_version": "2020-08-27", "created": now,
        "type": "payment_intent.succeeded", "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {
            "id": f"pi_3NexForward{now}", "object": "payment_intent", "amount": 4500, "amount_received": 4500,
            "currency": "eur", "status": "succeeded", "created": now - 60, "livemode": False,
            "metadata": {"order_id": "NEX-DEMO-2001", "merchant_id": MERCHANT},
        }},
    }
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, secret)
    status, _ = call("POST", f"{args.url}/webhooks/stripe", body.encode(), headers={"stripe-signature": signature})
    print(f"  storefront payment pi_3NexForward{now} (Stripe) -> {status}")
    return f"pi_3NexForward{now}"


def report(args):
    state = json.loads((STATE / "forwarding.json").read_text())
    receiver, endpoint = state["receiver"], state["endpoint"]
    key = stripe_payment(args)
    deadline = time.time() + 90
    got = []
    while time.time() < deadline:
        got = call("GET", f"{receiver}/_control/back-office")[1]["received"]
        ok = [d for d in got if d["answer"] == "ok"]
        order = any(d["body"]["type"] == "order.created" for d in ok)
        payment = any(d["id"].startswith(f"payment:{key}:") for d in ok)
        retried = bool(got) and any(d["id"] == got[0]["id"] for d in ok)
        if order and payment and retried:
            break
        time.sleep(0.5)
    first = got[0] if got else None
    shown = [next((d for d in got if d["answer"] == "ok" and d["body"]["type"] == t), None)
             for t in ("order.created", "payment.updated")]
    for d in filter(None, shown):
        data = d["body"]["data"]
        if d["body"]["type"].startswith("order."):
            what = f"version {data.get('version')}, status {data.get('status')}, buyer held: {data.get('buyer') is not None}"
        else:
            what = f"version {data.get('version')}, status {data.get('status')}"
        print(f"  delivered {d['body']['type']:<15} {d['id']}  verified={d['verified']} signatures={d['signatures']} ({what})")
    orders = sum(1 for d in got if d["answer"] == "ok" and d["body"]["type"].startswith("order."))
    payments = sum(1 for d in got if d["answer"] == "ok" and d["body"]["type"] == "payment.updated")
    print(f"  received and verified: {orders} order events, {payments} payment changes")
    if first:
        retried = [d for d in got if d["id"] == first["id"]]
        answers = " then ".join(d["answer"] for d in retried)
        gap = (retried[-1]["started_ms"] - retried[0]["started_ms"]) / 1000 if len(retried) > 1 else 0
        print(f"  first delivery {first['id']}: {answers} (retried {gap:.0f} s later, same webhook-id)")
    status, attempts = call("GET", f"{args.url}/endpoints/{endpoint}/attempts", key=KEY)
    print(f"  attempts recorded (no bodies): {len(attempts['attempts'])}, newest status {attempts['attempts'][0]['status']}")
    assert orders >= 1 and payments >= 1, got
    assert all(d["verified"] for d in got), "every delivery verifies"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["setup", "report"])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    setup(args) if args.step == "setup" else report(args)


if __name__ == "__main__":
    main()
