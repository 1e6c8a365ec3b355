#!/usr/bin/env python3
"""Regenerate events/ from the platforms' own payloads in ../shared/fixtures.

Each sample is an API Gateway HTTP API (v2.0) event whose body is a Stripe fixture, changed only where a
demo needs it: the fixtures' ids are all zeroed (every event is `evt_000...`), so each sample gets its own
event id, and the events of one demo order share one PaymentIntent id. Everything else is byte-exact.
The `stripe-signature` header is signed with the local development secret at a fixed timestamp; the
replay (infra/local/replay.py) re-signs at send time, and `cargo lambda invoke` needs
STRIPE_TOLERANCE_SECS large enough to accept the fixed timestamp (README, "Invoking one function").
"""
import json
import pathlib

import stripe

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "stripe" / "events"
OUT = ROOT / "events" / "stripe"
DEV_SECRET = json.loads(json.loads((ROOT / "infra/local/dev-secrets.json").read_text())["StripeWebhookSecret"])[
    "endpoint_secrets"
][0]
SIGNED_AT = 1764000000

ZERO_EVT = "evt_000000000000000000000000"
ZERO_PI = "pi_000000000000000000000000"

# (sample name, fixture file, event id, replacements)
SAMPLES = [
    ("01-order-a-checkout-completed", "checkout.session.completed.json", "evt_1NexDemoA01",
     [(ZERO_PI, "pi_3NexDemoOrderA")]),
    ("02-order-a-payment-succeeded", "payment_intent.succeeded.json", "evt_1NexDemoA02",
     [(ZERO_PI, "pi_3NexDemoOrderA")]),
    ("03-order-a-charge-succeeded-not-handled", "charge.succeeded.json", "evt_1NexDemoA03",
     [(ZERO_PI, "pi_3NexDemoOrderA")]),
    ("04-order-a-partially-refunded", "charge.refunded.json", "evt_1NexDemoA04",
     [('"payment_intent": null', '"payment_intent": "pi_3NexDemoOrderA"')]),
    ("05-order-b-payment-failed", "payment_intent.payment_failed.json", "evt_1NexDemoB01",
     [(ZERO_PI, "pi_3NexDemoOrderB")]),
    ("06-order-c-legacy-checkout-no-api-version", "checkout.session.completed.payment_mode.legacy.json",
     "evt_1NexDemoC01", [("evt_00000000000000", "evt_1NexDemoC01"), ("pi_00000000000000", "pi_3NexDemoOrderC")]),
    ("07-order-d-dispute-created", "charge.dispute.created.json", "evt_1NexDemoD01",
     [('"payment_intent": null', '"payment_intent": "pi_3NexDemoOrderD"')]),
]


def envelope(body) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/stripe",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json; charset=utf-8",
            "stripe-signature": stripe.WebhookSignature.generate_signature_header(body or "", DEV_SECRET, SIGNED_AT),
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "requestId": "sample-request",
            "routeKey": "POST /webhooks/stripe",
            "stage": "$default",
            "time": "24/Nov/2025:16:00:00 +0000",
            "timeEpoch": SIGNED_AT * 1000,
            "http": {"method": "POST", "path": "/webhooks/stripe", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "Stripe/1.0"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


WA_FIXTURES = ROOT.parent / "shared" / "fixtures" / "whatsapp"
SEEDS = json.loads((ROOT / "infra/local/dev-secrets.json").read_text())


def http(method, path, body, headers, query=""):
    """An API Gateway HTTP API v2 event (the same shape as `envelope`, for any route)."""
    e = envelope(body)
    e.update({"routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": query, "headers": headers})
    e["requestContext"].update({"routeKey": f"{method} {path}"})
    e["requestContext"]["http"].update({"method": method, "path": path})
    if query:
        e["queryStringParameters"] = dict(kv.split("=", 1) for kv in query.split("&"))
    return e


def sqs(records):
    return {"Records": [{
        "messageId": f"0000000{i}-0000-4000-8000-00000000000{i}", "receiptHandle": f"sample-{i}",
        "body": json.dumps(body), "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764000000000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:nex-local-Queue", "awsRegion": "us-east-1",
    } for i, body in enumerate(records, start=1)]}


def envelope_of(kind, id_, payload):
    return {"type": kind, "version": 1, "id": id_, "occurred_at": "2025-11-24T16:00:00Z", "trace_id": "sample",
            "payload": payload}


def whatsapp_samples():
    """WhatsApp webhook requests (Meta's payloads, signed with the local App Secret), worker and sender batches,
    and an opt-in request to the consent API."""
    import hashlib
    import hmac

    app_secret = json.loads(SEEDS["WhatsAppAppSecret"])["app_secrets"][0]
    out = ROOT / "events" / "whatsapp"
    out.mkdir(parents=True, exist_ok=True)
    token = SEEDS["WhatsAppVerifyTokenSecret"]
    (out / "01-verification-handshake.json").write_text(json.dumps(http(
        "GET", "/webhooks/whatsapp", None, {"user-agent": "facebookexternalua"},
        f"hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"), indent=2) + "\n")
    for i, (name, rel) in enumerate([("inbound-text", "meta_openapi/inbound_text.json"),
                                     ("receipt-delivered", "captured/bindambc_status_delivered.json"),
                                     ("receipt-failed-131047", "captured/bindambc_status_failed_131047_reengagement.json")],
                                    start=2):
        body = (WA_FIXTURES / rel).read_text()
        sig = "sha256=" + hmac.new(app_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        (out / f"0{i}-{name}.json").write_text(json.dumps(http(
            "POST", "/webhooks/whatsapp", body, {"content-type": "application/json", "x-hub-signature-256": sig}),
            indent=2) + "\n")
    (ROOT / "events" / "http").mkdir(parents=True, exist_ok=True)
    (ROOT / "events" / "http" / "consent-opt-in.json").write_text(json.dumps(http(
        "POST", "/consent/opt-ins",
        json.dumps({"id": "sample-optin-1", "phone": "+16505551234", "source": "checkout_page"}),
        {"content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"}), indent=2) + "\n")
    inbound = envelope_of("whatsapp.inbound_message", "wamid.sample1", {
        "merchant": "merchant-demo-1", "phone_number_id": "106540352242922", "wamid": "wamid.sample1",
        "subjects": ["sample-subject-hash"], "phone": None, "bsuid": None, "kind": "text",
        "text": "Does it come in another color?", "sent_at": "2025-11-24T16:00:00Z", "keyword": None})
    receipt = envelope_of("whatsapp.receipt", "wamid.sample2#read", {
        "merchant": "merchant-demo-1", "wamid": "wamid.sample2", "status": "read", "error_code": None,
        "at": "2025-11-24T16:00:05Z", "subjects": ["sample-subject-hash"]})
    (ROOT / "events" / "sqs" / "messaging-worker-batch.json").write_text(json.dumps(sqs([inbound, receipt]), indent=2) + "\n")
    send = envelope_of("notification.send_request", "sample-send-1", {
        "id": "sample-send-1", "merchant": "merchant-demo-1", "phone_number_id": "106540352242922",
        "to": "+16505551234", "content": {"type": "template", "name": "order_confirmation", "language": "en_US"},
        "own_order": True, "order_open": True})
    (ROOT / "events" / "sqs" / "notifications-sender-batch.json").write_text(json.dumps(sqs([send]), indent=2) + "\n")


def privacy_samples():
    """The retention sweep's triggers (EventBridge schedule, continuation message), a data-requests batch, and
    the merchant API's data-request routes."""
    (ROOT / "events" / "schedule").mkdir(parents=True, exist_ok=True)
    (ROOT / "events" / "schedule" / "retention-sweep.json").write_text(json.dumps({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2025-11-24T03:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/nex-RetentionSweepFunctionDaily"], "detail": {},
    }, indent=2) + "\n")
    cont = envelope_of("sweep.continue", "sweep-1764000000", {"started_at": "2025-11-24T03:00:00Z"})
    (ROOT / "events" / "sqs" / "retention-sweep-continue.json").write_text(json.dumps(sqs([cont]), indent=2) + "\n")
    dsr = envelope_of("dsr.requested", "api-sample-1", {
        "id": "api-sample-1", "subjects": ["sample-subject-hash"], "kind": "export", "source": "merchant_api",
        "merchant": "merchant-demo-1", "received_at": "2025-11-24T16:00:00Z", "answer_by": "2025-12-24T16:00:00Z"})
    (ROOT / "events" / "sqs" / "data-requests-worker-batch.json").write_text(json.dumps(sqs([dsr]), indent=2) + "\n")
    auth = {"content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"}
    (ROOT / "events" / "http" / "data-request-open.json").write_text(json.dumps(http(
        "POST", "/data-requests", json.dumps({"kind": "export", "phone": "+16505551234", "reference": "TICKET-1042"}),
        auth), indent=2) + "\n")
    show = http("GET", "/data-requests/api-sample-1", None, auth)
    show["routeKey"] = show["requestContext"]["routeKey"] = "GET /data-requests/{id}"
    show["pathParameters"] = {"id": "api-sample-1"}
    (ROOT / "events" / "http" / "data-request-show.json").write_text(json.dumps(show, indent=2) + "\n")


def main():
    whatsapp_samples()
    privacy_samples()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fixture, event_id, replacements in SAMPLES:
        body = (FIXTURES / fixture).read_text()
        body = body.replace(ZERO_EVT, event_id)
        for old, new in replacements:
            assert old in body, (fixture, old)
            body = body.replace(old, new)
        (OUT / f"{name}.json").write_text(json.dumps(envelope(body), indent=2) + "\n")
    print(f"wrote {len(SAMPLES)} samples to {OUT}")


if __name__ == "__main__":
    main()
