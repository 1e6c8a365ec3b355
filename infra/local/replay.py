#!/usr/bin/env python3
"""Show the local suite doing its job: replay events/stripe/*.json against the running stack.

Each sample's body is signed at send time with the local Stripe secret using Stripe's own Python library
(so the stack is checked against Stripe's signing code, not ours), then POSTed to the Stripe route.
A duplicate delivery and a forged one follow. When the payments queue has drained, the orders and their
payment states are printed from DynamoDB.
"""
import argparse
import json
import pathlib
import sys
import time
import urllib.error
import urllib.request

import boto3
import stripe

ROOT = pathlib.Path(__file__).resolve().parents[2]


def post(url, body, signature):
    req = urllib.request.Request(
        url, data=body.encode(), method="POST",
        headers={"content-type": "application/json; charset=utf-8", "stripe-signature": signature},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--url", default="http://127.0.0.1:3000/webhooks/stripe")
    a = ap.parse_args()
    m = json.loads(pathlib.Path(a.manifest).read_text())
    secret_value = json.loads(json.loads((ROOT / "infra/local/dev-secrets.json").read_text())["StripeWebhookSecret"])
    secret = secret_value["endpoint_secrets"][0]

    print(f"\n== replaying events/stripe/ to {a.url}")
    print(f"{'sample':<48} {'HTTP':>4}  outcome")
    samples = sorted((ROOT / "events" / "stripe").glob("*.json"))
    bodies = []
    for path in samples:
        body = json.loads(path.read_text())["body"]
        bodies.append(body)
        status, resp = post(a.url, body, stripe.WebhookSignature.generate_signature_header(body, secret))
        print(f"{path.stem:<48} {status:>4}  {resp.get('status')} {resp.get('id') or resp.get('reason', '')}")
    dup = bodies[1]
    status, resp = post(a.url, dup, stripe.WebhookSignature.generate_signature_header(dup, secret))
    print(f"{'(same as 02, delivered again)':<48} {status:>4}  {resp.get('status')} {resp.get('id', '')}")
    status, resp = post(a.url, dup, stripe.WebhookSignature.generate_signature_header(dup, "whsec_forged"))
    print(f"{'(02 signed with the wrong secret)':<48} {status:>4}  {resp.get('status')} {resp.get('reason', '')}")
    stale = stripe.WebhookSignature.generate_signature_header(dup, secret, int(time.time()) - 3600)
    status, resp = post(a.url, dup, stale)
    print(f"{'(02 signed an hour ago)':<48} {status:>4}  {resp.get('status')} {resp.get('reason', '')}")

    kw = dict(region_name=m["region"], endpoint_url=m["endpoint"])
    sqs = boto3.client("sqs", **kw)
    ddb = boto3.client("dynamodb", **kw)
    queue = m["queues"]["PaymentEventsQueue"]["url"]
    deadline = time.time() + 30
    while time.time() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(0.5)
    else:
        print("payments queue did not drain within 30 s", file=sys.stderr)

    table = m["tables"]["PaymentsTable"]
    items = ddb.scan(TableName=table)["Items"]
    now = int(time.time())
    print(f"\n== orders in {table} (order C's events are from 2012: past the 6-year window, so not stored)")
    print(f"{'payment':<22} {'status':<20} {'amount':>8} {'cur':<4} {'card':<12} {'deletes after (TTL)':<20}")
    for it in sorted(items, key=lambda i: i["payment_key"]["S"]):
        exp = int(it["expires_at"]["N"])
        if exp <= now:
            continue  # past its deadline: never shown, as the functions' own reads do
        card = it.get("card", {}).get("M")
        card_s = f"{card['brand']['S']} {card['last4']['S']}" if card else "-"
        amount = it.get("amount", {}).get("N", "-")
        print(
            f"{it['payment_key']['S']:<22} {it['status']['S']:<20} {amount:>8} "
            f"{it.get('currency', {}).get('S', '-'):<4} {card_s:<12} "
            f"{time.strftime('%Y-%m-%d', time.gmtime(exp)):<20}"
        )
    dlq = m["queues"]["PaymentEventsDLQ"]["url"]
    depth = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    print(f"\nDLQ depth: {depth['ApproximateNumberOfMessages']}")


if __name__ == "__main__":
    main()
