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


def whatsapp(url, m):
    """Meta's handshake, then WhatsApp payloads signed with the local App Secret, a duplicate, a STOP."""
    import hashlib
    import hmac
    import urllib.parse

    seeds = json.loads((ROOT / "infra/local/dev-secrets.json").read_text())
    app_secret = json.loads(seeds["WhatsAppAppSecret"])["app_secrets"][0]
    token = seeds["WhatsAppVerifyTokenSecret"]
    print(f"\n== WhatsApp: {url}")
    q = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"})
    with urllib.request.urlopen(f"{url}?{q}", timeout=10) as r:
        print(f"{'GET verification handshake':<48} {r.status:>4}  challenge echoed: {r.read().decode()}")

    def redate(body):
        """Meta's examples are dated when they were written; the webhook ignores items older than Meta's
        7-day retry window. Re-dated as a delivery made two days ago would be (so the 24-hour window of
        their senders is closed), each keeping its distance to the newest, up to three days."""
        def walk(v, f):
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "timestamp" and str(x).isdigit():
                        v[k] = f(x)
                    else:
                        walk(x, f)
            elif isinstance(v, list):
                for x in v:
                    walk(x, f)
        doc = json.loads(body)
        stamps = []
        walk(doc, lambda x: stamps.append(int(x)) or x)
        newest, base = max(stamps, default=0), int(time.time()) - 2 * 86400
        walk(doc, lambda x: type(x)(base - min(newest - int(x), 3 * 86400)))
        return json.dumps(doc)

    def post_wa(body, secret=app_secret):
        body = redate(body)
        sig = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"content-type": "application/json", "x-hub-signature-256": sig})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    # This repository's samples (events/whatsapp), then Meta's and captured payloads when ../shared/fixtures
    # is beside the repository.
    samples = [json.loads(p.read_text())["body"] for p in sorted((ROOT / "events/whatsapp").glob("0*.json"))]
    samples = [b for b in samples if b]
    platform = [p.read_text() for p in sorted((ROOT.parent / "shared/fixtures/whatsapp").glob("*/*.json"))]
    totals = {"messages": 0, "receipts": 0, "duplicates": 0}
    for body in samples + platform:
        status, resp = post_wa(body)
        for k in totals:
            totals[k] += resp.get(k, 0)
    print(f"{f'{len(samples)} sample + {len(platform)} platform payloads':<48} {status:>4}  "
          f"{totals['messages']} messages, {totals['receipts']} receipts queued "
          f"({totals['duplicates']} repeated wamids skipped)")
    status, resp = post_wa(samples[0])
    print(f"{'(first payload delivered again)':<48} {status:>4}  duplicates: {resp.get('duplicates')}")
    stop = samples[0].replace("Is the blue jacket back in stock?", "STOP").replace("wamid.", "wamid.stop")
    status, resp = post_wa(stop)
    print(f"{'a customer replies STOP':<48} {status:>4}  opt-outs recorded for every merchant: {resp.get('opt_outs')}")
    status, resp = post_wa(stop.replace("wamid.stop", "wamid.forged"), "not-the-app-secret")
    print(f"{'(signed with the wrong App Secret)':<48} {status:>4}  {resp.get('status')} {resp.get('reason', '')}")


def notifications(m, sqs, ddb):
    """Send requests for the person who just replied STOP (Meta's example sender), through the queue."""
    to = "+16505551234"
    requests = [
        ("order confirmation, open order (utility)", "demo-utility", {"type": "template", "name": "order_confirmation", "language": "en_US"}, True),
        ("spring sale (marketing) after STOP", "demo-marketing", {"type": "template", "name": "spring_sale", "language": "en_US"}, False),
        ("free-form text (their last message: 2 days ago)", "demo-text", {"type": "text", "body": "Yes, it comes in blue too."}, True),
    ]
    queue = m["queues"]["NotificationsQueue"]["url"]
    for _, rid, content, own in requests:
        payload = {"id": f"{rid}-{int(time.time())}", "merchant": "merchant-demo-1", "phone_number_id": "106540352242922",
                   "to": to, "content": content, "own_order": own, "order_open": own}
        env = {"type": "notification.send_request", "version": 1, "id": payload["id"],
               "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "trace_id": "demo", "payload": payload}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(env))
        globals().setdefault("_sent_ids", []).append(payload["id"])
    platform = m["tables"]["PlatformTable"]
    print(f"\n== WhatsApp sends (notifications queue -> Cloud API stand-in at /_local/graph)")
    deadline = time.time() + 30
    results = {}
    while time.time() < deadline and len(results) < len(requests):
        for rid in globals()["_sent_ids"]:
            item = ddb.get_item(TableName=platform, Key={"pk": {"S": f"notifications-sender#{rid}"}}, ConsistentRead=True).get("Item")
            if item and item.get("status", {}).get("S") == "COMPLETED":
                results[rid] = item.get("result", {}).get("S", "")
        time.sleep(0.3)
    for (label, _, _, _), rid in zip(requests, globals()["_sent_ids"]):
        print(f"{label:<48}       {results.get(rid, 'not handled yet')}")


def fnv_shard(key, shards=4):
    """The due-index shard of an item key: FNV-1a, as retention::due_bucket computes it."""
    h = 0x811C9DC5
    for b in key.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % shards


def due_keys(key, due):
    return {"expires_at": {"N": str(due)},
            "due_bucket": {"S": f"{time.strftime('%Y-%m-%d', time.gmtime(due))}#{fnv_shard(key)}"}}


def api(url, method, body=None):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers={
        "content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def privacy(base, m, ddb):
    """A merchant's support team asks for a customer's data; the retention sweep runs; the audit log holds."""
    print(f"\n== data-subject request through the merchant API ({base}/data-requests)")
    body = json.dumps({"kind": "export", "phone": "+16505551234", "reference": f"ticket-{int(time.time())}"})
    status, resp = api(f"{base}/data-requests", "POST", body)
    rid = resp.get("id")
    print(f"{'POST export request for the STOP customer':<48} {status:>4}  {resp.get('status')} {rid}")
    shown = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        _, shown = api(f"{base}/data-requests/{rid}", "GET")
        if shown.get("status") == "completed":
            break
        time.sleep(0.3)
    print(f"{'GET the request':<48}       {shown.get('status')}: {shown.get('result')}")
    if shown.get("export_url"):
        with urllib.request.urlopen(shown["export_url"], timeout=10) as r:
            export = json.loads(r.read())
        kinds = sorted({i["kind"] or "?" for i in export["items"]})
        print(f"{'download the export (presigned, 15 min)':<48}       {export['schema']}: {len(export['items'])} items {kinds}")

    # Two things just past their deadline, as the sweep would find them in production. Only seconds past it:
    # the local TTL reaper (like DynamoDB's) removes what is past its deadline by more than its lag (30 s),
    # and the demo is about the sweep, which must not race it.
    now = int(time.time())
    orders = m["tables"]["OrdersTable"]
    messaging = m["tables"]["MessagingTable"]
    pk = "merchant#merchant-demo-1"
    ddb.put_item(TableName=orders, Item={
        "pk": {"S": pk}, "sk": {"S": "order#amazon#111-2223334-5556667"}, "total": {"N": "4599"},
        "buyer_name": {"S": "Demo Buyer"}, "shipping_address": {"S": "1 Demo Street"},
        "due_action": {"S": "anonymise"}, **due_keys(f"{pk}111-2223334-5556667", now - 5)})
    gone = "merchant#merchant-demo-9"
    ddb.put_item(TableName=orders, Item={"pk": {"S": gone}, "sk": {"S": "order#bol#B-77"}, "total": {"N": "1200"}})
    ddb.put_item(TableName=messaging, Item={
        "pk": {"S": gone}, "sk": {"S": "contract"}, "merchant_id": {"S": "merchant-demo-9"},
        "due_action": {"S": "delete"}, **due_keys(gone, now - 5)})
    print("\n== retention sweep (EventBridge schedule fired on demand: POST /_local/schedules/Daily)")
    req = urllib.request.Request(f"{base}/_local/schedules/Daily", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        print(f"{'sweep run':<48} {r.status:>4}  {json.loads(r.read()).get('status')}")
    entries = ddb.query(TableName=m["tables"]["DataRequestsTable"], KeyConditionExpression="pk = :a",
                        ExpressionAttributeValues={":a": {"S": "audit"}}, ScanIndexForward=False, Limit=10,
                        ConsistentRead=True)["Items"]
    report = next((json.loads(e["detail"]["S"]) for e in entries if e.get("action", {}).get("S") == "sweep.run"), {})
    for cls, actions in sorted(report.get("actions", {}).items()):
        for action, n in actions.items():
            print(f"{'  ' + cls:<48}       {action}: {n}")
    order = ddb.get_item(TableName=orders, Key={"pk": {"S": pk}, "sk": {"S": "order#amazon#111-2223334-5556667"}},
                         ConsistentRead=True).get("Item", {})
    print(f"{'Amazon order after the sweep':<48}       kept: {sorted(order)}")
    left = ddb.query(TableName=orders, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": gone}})["Count"]
    print(f"{'terminated merchant: order metadata left':<48}       {left}")


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

    whatsapp(a.url.replace("/webhooks/stripe", "/webhooks/whatsapp"), m)

    kw = dict(region_name=m["region"], endpoint_url=m["endpoint"])
    sqs = boto3.client("sqs", **kw)
    notifications(m, sqs, boto3.client("dynamodb", **kw))
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

    privacy(a.url.replace("/webhooks/stripe", ""), m, ddb)


if __name__ == "__main__":
    main()
