#!/usr/bin/env python3
"""Regenerate events/: sample events for tests, `cargo lambda invoke`, `sam local invoke` and the local demo.

Every payload here is written by this script in the platforms' documented shapes (Stripe's event and object
reference, Meta's WhatsApp Cloud API webhook reference), with this repository's own ids, amounts, names and
times; none is read from ../shared/fixtures, so a fresh clone has them. The conformance tests check the
suite against the platforms' own published payloads separately, when that folder is beside the repository.

Each Stripe sample is an API Gateway HTTP API (v2.0) event; the events of one demo order share one
PaymentIntent id. The `stripe-signature` header is signed with the local development secret at a fixed
timestamp; the replay (infra/local/replay.py) re-signs at send time, and `cargo lambda invoke` needs
STRIPE_TOLERANCE_SECS large enough to accept the fixed timestamp (README, "Invoking one function").
"""
import json
import pathlib

import stripe

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "events" / "stripe"
DEV_SECRET = json.loads(json.loads((ROOT / "infra/local/dev-secrets.json").read_text())["StripeWebhookSecret"])[
    "endpoint_secrets"
][0]
SIGNED_AT = 1764000000
API_VERSION = "2020-08-27"


def stripe_event(event_id, kind, created, obj, api_version=API_VERSION):
    """A Stripe `event` object (https://docs.stripe.com/api/events/object)."""
    event = {"id": event_id, "object": "event", "api_version": api_version, "created": created,
             "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
             "request": {"id": None, "idempotency_key": None}, "type": kind}
    if api_version is None:
        del event["api_version"]
    return json.dumps(event, indent=2)


def card(brand, last4, exp_year=2030):
    return {"card": {"brand": brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                                 "cvc_check": "pass"},
                     "country": "NL", "exp_month": 8, "exp_year": exp_year, "fingerprint": "NexDemoFingerprint",
                     "funding": "credit", "last4": last4, "network": brand, "three_d_secure": None, "wallet": None},
            "type": "card"}


def charge(charge_id, pi, amount, status, brand, last4, refunded=0, failure_code=None, created=1764000100):
    """A Charge (https://docs.stripe.com/api/charges/object)."""
    return {"id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount if status == "succeeded" else 0,
            "amount_refunded": refunded, "billing_details": {"address": {"city": None, "country": "NL", "line1": None,
                                                                          "line2": None, "postal_code": None, "state": None},
                                                              "email": None, "name": None, "phone": None},
            "captured": status == "succeeded", "created": created, "currency": "eur",
            "failure_code": failure_code, "failure_message": "Your card was declined." if failure_code else None,
            "livemode": False, "metadata": {"order_id": "NEX-DEMO-1001"}, "paid": status == "succeeded",
            "payment_intent": pi, "payment_method": "pm_NexDemoCard", "payment_method_details": card(brand, last4),
            "receipt_email": None, "refunded": refunded == amount and amount > 0, "status": status}


def payment_intent(pi, amount, status, charges):
    """A PaymentIntent as API versions before 2022-11-15 send it, with its `charges` list."""
    return {"id": pi, "object": "payment_intent", "amount": amount, "amount_received": amount if status == "succeeded" else 0,
            "capture_method": "automatic", "charges": {"object": "list", "data": charges, "has_more": False,
                                                       "total_count": len(charges), "url": f"/v1/charges?payment_intent={pi}"},
            "client_secret": f"{pi}_secret_NexDemo", "confirmation_method": "automatic", "created": 1764000000,
            "currency": "eur", "customer": None, "livemode": False, "metadata": {"order_id": "NEX-DEMO-1001"},
            "payment_method_types": ["card"], "status": status}


def checkout_session(session_id, pi, amount, email, status="complete"):
    """A Checkout Session in payment mode (https://docs.stripe.com/api/checkout/sessions/object)."""
    return {"id": session_id, "object": "checkout.session", "amount_subtotal": amount, "amount_total": amount,
            "client_reference_id": None, "currency": "eur", "customer": None,
            "customer_details": {"email": email, "name": None, "phone": None, "tax_exempt": "none", "tax_ids": []},
            "livemode": False, "metadata": {}, "mode": "payment", "payment_intent": pi, "payment_status": "paid",
            "status": status, "success_url": "https://shop.example/thanks"}


# (sample name, event id, type, created, object, api version)
SAMPLES = [
    ("01-order-a-checkout-completed", "evt_1NexDemoA01", "checkout.session.completed", 1764000050,
     checkout_session("cs_test_NexDemoOrderA", "pi_3NexDemoOrderA", 3000, "jane.doe@example.com"), API_VERSION),
    ("02-order-a-payment-succeeded", "evt_1NexDemoA02", "payment_intent.succeeded", 1764000120,
     payment_intent("pi_3NexDemoOrderA", 3000, "succeeded",
                    [charge("ch_3NexDemoOrderA", "pi_3NexDemoOrderA", 3000, "succeeded", "visa", "4242")]), API_VERSION),
    ("03-order-a-charge-succeeded-not-handled", "evt_1NexDemoA03", "charge.succeeded", 1764000110,
     charge("ch_3NexDemoOrderA", "pi_3NexDemoOrderA", 3000, "succeeded", "visa", "4242"), API_VERSION),
    ("04-order-a-partially-refunded", "evt_1NexDemoA04", "charge.refunded", 1764003600,
     charge("ch_3NexDemoOrderA", "pi_3NexDemoOrderA", 3000, "succeeded", "visa", "4242", refunded=500), API_VERSION),
    ("05-order-b-payment-failed", "evt_1NexDemoB01", "payment_intent.payment_failed", 1764000200,
     payment_intent("pi_3NexDemoOrderB", 2000, "requires_payment_method",
                    [charge("ch_3NexDemoOrderB", "pi_3NexDemoOrderB", 2000, "failed", "visa", "0002",
                            failure_code="card_declined")]), API_VERSION),
    ("06-order-c-legacy-checkout-no-api-version", "evt_1NexDemoC01", "checkout.session.completed", 1325419200,
     checkout_session("cs_NexDemoOrderC", "pi_3NexDemoOrderC", 18000, "old.customer@example.com", status=None), None),
    ("07-order-d-dispute-created", "evt_1NexDemoD01", "charge.dispute.created", 1764007200,
     {"id": "dp_NexDemoOrderD", "object": "dispute", "amount": 1000, "charge": "ch_3NexDemoOrderD", "created": 1764007200,
      "currency": "eur", "evidence_details": {"due_by": 1764784800, "has_evidence": False, "past_due": False,
                                              "submission_count": 0},
      "is_charge_refundable": False, "livemode": False, "metadata": {}, "payment_intent": "pi_3NexDemoOrderD",
      "reason": "fraudulent", "status": "warning_needs_response"}, API_VERSION),
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


WABA_ID = "419561257915477"
PHONE_NUMBER_ID = "106540352242922"
CUSTOMER = "16505551234"


def wa_change(value):
    """A WhatsApp Business Account webhook notification with one `messages` change
    (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components)."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID}, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]}


def wa_inbound(wamid, text, timestamp):
    return wa_change({
        "contacts": [{"profile": {"name": "Jane Doe"}, "wa_id": CUSTOMER}],
        "messages": [{"from": CUSTOMER, "id": wamid, "timestamp": str(timestamp), "type": "text",
                      "text": {"body": text}}]})


def wa_status(wamid, status, timestamp, error=None):
    st = {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": CUSTOMER,
          "conversation": {"id": "NexDemoConversation1", "origin": {"type": "utility"}},
          "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}}
    if error:
        st["errors"] = [error]
        del st["conversation"], st["pricing"]
    return wa_change({"statuses": [st]})


WHATSAPP = [
    ("inbound-text", wa_inbound("wamid.NexDemoInbound1", "Is the blue jacket back in stock?", 1764000000)),
    ("receipt-delivered", wa_status("wamid.NexDemoOutbound1", "delivered", 1764000030)),
    ("receipt-failed-131047", wa_status("wamid.NexDemoOutbound2", "failed", 1764000060, {
        "code": 131047, "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {"details": "The customer has not written to this business number for over a day, so only "
                                  "a template may be sent."},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"})),
]
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


def scheduled(id_, time, rule):
    """An EventBridge scheduled event of the rule `rule`."""
    return {"version": "0", "id": id_, "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": time, "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"], "detail": {}}


def envelope_of(kind, id_, payload):
    return {"type": kind, "version": 1, "id": id_, "occurred_at": "2025-11-24T16:00:00Z", "trace_id": "sample",
            "payload": payload}


def whatsapp_samples():
    """WhatsApp webhook requests (in Meta's documented shape, signed with the local App Secret), worker and sender batches,
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
    for i, (name, payload) in enumerate(WHATSAPP, start=2):
        body = json.dumps(payload, indent=2)
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
    (ROOT / "events" / "schedule" / "retention-sweep.json").write_text(json.dumps(scheduled(
        "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "2025-11-24T03:00:00Z", "nex-RetentionSweepFunctionDaily"), indent=2) + "\n")
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


def marketplace_samples():
    """The marketplace scheduler's schedule, a poll batch, the merchant API's connection routes, and eBay's
    account-deletion endpoint check (the signed notice is made by the tests, with their own key)."""
    (ROOT / "events" / "schedule" / "marketplace-scheduler.json").write_text(json.dumps(scheduled(
        "0b5e2c1e-7d0c-4c5e-9b9a-1f3c2d4e5f60", "2025-11-24T03:05:00Z", "nex-MarketplaceSchedulerFunctionPoll"),
        indent=2) + "\n")
    job = envelope_of("orders.poll", "poll:sample-connection:1764000300", {"connection": "0123456789abcdef01234567"})
    (ROOT / "events" / "sqs" / "marketplace-poller-batch.json").write_text(json.dumps(sqs([job]), indent=2) + "\n")
    auth = {"content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"}
    (ROOT / "events" / "http" / "connection-start-amazon.json").write_text(json.dumps(http(
        "POST", "/connections", json.dumps({"marketplace": "amazon", "sites": ["A1PA6795UKMFR9"], "account": "A3SAMPLESELLER"}), auth), indent=2) + "\n")
    (ROOT / "events" / "http" / "connections-list.json").write_text(json.dumps(http("GET", "/connections", None, auth), indent=2) + "\n")
    check = http("GET", "/webhooks/ebay/account-deletion", None, {"user-agent": "eBay"},
                 "challenge_code=a8628072-3d33-45ee-9004-bee86830a22d")
    (ROOT / "events" / "http" / "ebay-account-deletion-check.json").write_text(json.dumps(check, indent=2) + "\n")


def forwarding_samples():
    """The webhook dispatcher's batch (an order event and a payment change), a sender job, the delivery
    scheduler's schedule, and the merchant API's endpoint routes."""
    batch = [{"order_event": {"pk": "merchant#merchant-demo-1", "sk": "event#amazon#303-0000001-0000001#1764000000000"}},
             {"payment_event": {"payment_key": "pi_3NexDemoOrderA"}}]
    (ROOT / "events" / "sqs" / "webhook-dispatcher-batch.json").write_text(json.dumps(sqs(batch), indent=2) + "\n")
    job = {"delivery": {"merchant": "merchant-demo-1", "endpoint": "ep_0123456789abcdef01234567",
                        "event_id": "order:amazon:303-0000001-0000001:1764000000000", "step": 0}}
    (ROOT / "events" / "sqs" / "webhook-sender-batch.json").write_text(json.dumps(sqs([job]), indent=2) + "\n")
    (ROOT / "events" / "schedule" / "webhook-scheduler.json").write_text(json.dumps(scheduled(
        "6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c", "2025-11-24T03:06:00Z", "nex-WebhookSchedulerFunctionDue"),
        indent=2) + "\n")
    auth = {"content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"}
    (ROOT / "events" / "http" / "endpoint-create.json").write_text(json.dumps(http(
        "POST", "/endpoints", json.dumps({"url": "http://127.0.0.1:9/hooks/back-office",
                                          "event_types": ["order.created", "order.updated", "payment.updated"],
                                          "description": "ERP"}), auth), indent=2) + "\n")
    (ROOT / "events" / "http" / "endpoints-list.json").write_text(json.dumps(http("GET", "/endpoints", None, auth), indent=2) + "\n")
    replay = http("POST", "/endpoints/ep_0123456789abcdef01234567/replay",
                  json.dumps({"since": "2025-11-23T00:00:00Z", "until": "2025-11-24T00:00:00Z"}), auth)
    replay["routeKey"] = replay["requestContext"]["routeKey"] = "POST /endpoints/{id}/replay"
    replay["pathParameters"] = {"id": "ep_0123456789abcdef01234567"}
    (ROOT / "events" / "http" / "endpoint-replay.json").write_text(json.dumps(replay, indent=2) + "\n")


def insights_samples():
    """The insights scheduler's schedule, a puller batch (a pull and a campaign mapping), and the merchant
    API's ad performance routes."""
    (ROOT / "events" / "schedule" / "insights-scheduler.json").write_text(json.dumps(scheduled(
        "7a2b3c4d-5e6f-4a70-8b9c-0d1e2f3a4b5c", "2025-11-24T06:00:00Z", "nex-InsightsSchedulerFunctionPull"),
        indent=2) + "\n")
    batch = [{"insights_pull": {"account_id": "1234567890"}},
             {"campaign_mapped": {"campaign_id": "23850000000000001", "account_id": "1234567890", "retailer": "merchant-demo-1"}}]
    (ROOT / "events" / "sqs" / "insights-puller-batch.json").write_text(json.dumps(sqs(batch), indent=2) + "\n")
    auth = {"content-type": "application/json", "authorization": "Bearer local-dev-merchant-api-key"}
    (ROOT / "events" / "http" / "ad-performance.json").write_text(json.dumps(http(
        "GET", "/ad-performance", None, auth, "since=2025-11-01&until=2025-11-24"), indent=2) + "\n")
    (ROOT / "events" / "http" / "ad-campaign-claim.json").write_text(json.dumps(http(
        "POST", "/ad-campaigns", json.dumps({"campaign_id": "23850000000000077", "account_id": "1234567890"}), auth),
        indent=2) + "\n")


def main():
    whatsapp_samples()
    insights_samples()
    privacy_samples()
    marketplace_samples()
    forwarding_samples()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, event_id, kind, created, obj, api_version in SAMPLES:
        body = stripe_event(event_id, kind, created, obj, api_version)
        (OUT / f"{name}.json").write_text(json.dumps(envelope(body), indent=2) + "\n")
    print(f"wrote {len(SAMPLES)} samples to {OUT}")


if __name__ == "__main__":
    main()
