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


def envelope(body: str) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/stripe",
        "rawPath": "/webhooks/stripe",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json; charset=utf-8",
            "stripe-signature": stripe.WebhookSignature.generate_signature_header(body, DEV_SECRET, SIGNED_AT),
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


def main():
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
