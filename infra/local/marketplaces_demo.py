#!/usr/bin/env python3
"""Show marketplace orders arriving in the local suite: a demo merchant connects Amazon (consent and
callback), eBay (consent and callback) and bol.com (client credentials) through the merchant API; the poll
schedule is fired; the orders are stored, normalised, their buyers held apart and their events queued;
a second poll changes nothing. The marketplaces are the local runner's stand-ins (/_local/amazon, ...).
"""
import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3

KEY = "local-dev-merchant-api-key"
MERCHANT = "merchant-demo-1"


def call(method, url, body=None, key=None):
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def consent(base, marketplace, body, callback_query):
    status, started = call("POST", f"{base}/connections", body, KEY)
    assert status == 201, (status, started)
    state = urllib.parse.parse_qs(urllib.parse.urlparse(started["consent_url"]).query)["state"][0]
    print(f"  {marketplace}: consent URL issued ({started['consent_url'].split('?')[0]}), state valid until {started['state_expires_at']}")
    q = urllib.parse.urlencode({**callback_query, "state": state})
    status, made = call("GET", f"{base}/connections/callback/{marketplace}?{q}")
    assert status == 201, (status, made)
    again, _ = call("GET", f"{base}/connections/callback/{marketplace}?{q}")
    print(f"  {marketplace}: callback -> {status} connection {made['id']}; the same state again -> {again}")


def counts(ddb, table):
    out = {"order": 0, "buyer": 0, "event": 0}
    pager = ddb.get_paginator("query")
    for page in pager.paginate(TableName=table, KeyConditionExpression="pk = :p",
                               ExpressionAttributeValues={":p": {"S": f"merchant#{MERCHANT}"}}):
        for item in page["Items"]:
            kind = item["sk"]["S"].split("#", 1)[0]
            out[kind] = out.get(kind, 0) + 1
    return out


def poll(base, ddb, table):
    before = {c["id"]: c.get("last_success") for c in call("GET", f"{base}/connections", key=KEY)[1]["connections"]}
    call("POST", f"{base}/_local/schedules/Poll")
    for _ in range(150):
        now = {c["id"]: c.get("last_success") for c in call("GET", f"{base}/connections", key=KEY)[1]["connections"]}
        if all(now.get(i) and now.get(i) != before.get(i) for i in now):
            return
        time.sleep(0.2)
    raise SystemExit("the poll did not complete in 30 s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--url", required=True, help="the local suite's base URL")
    a = ap.parse_args()
    m = json.load(open(a.manifest))
    ddb = boto3.client("dynamodb", endpoint_url=m["endpoint"], region_name=m["region"])
    sqs = boto3.client("sqs", endpoint_url=m["endpoint"], region_name=m["region"])
    orders = m["tables"]["OrdersTable"]
    base = a.url.rstrip("/")

    print("\n== marketplace connections for merchant-demo-1 (merchant API, its key)")
    consent(base, "amazon", {"marketplace": "amazon", "sites": ["A1PA6795UKMFR9"], "account": "A3DEMOSELLER01"},
            {"spapi_oauth_code": "local-demo-code", "selling_partner_id": "A3DEMOSELLER01"})
    consent(base, "ebay", {"marketplace": "ebay", "account": "demo_ebay_seller"}, {"code": "local-demo-code"})
    status, made = call("POST", f"{base}/connections",
                        {"marketplace": "bol", "client_id": "local-demo-bol-client", "client_secret": "local-demo"}, KEY)
    print(f"  bol: client credentials checked at bol -> {status} connection {made.get('id')}")

    print("\n== the poll schedule fired: one job per active connection")
    poll(base, ddb, orders)
    first = counts(ddb, orders)
    for c in call("GET", f"{base}/connections", key=KEY)[1]["connections"]:
        print(f"  {c['marketplace']:<7} {c['status']:<7} watermark {c['watermark']}  last error {c['last_error']}")
    print(f"  stored for {MERCHANT}: {first['order']} orders (no buyer data in them), {first['buyer']} buyers apart, "
          f"{first['event']} order events")
    print(f"  order events for forwarding: {first['event']}")
    sample = ddb.get_item(TableName=orders, Key={"pk": {"S": f"merchant#{MERCHANT}"}, "sk": {"S": "order#amazon#303-0000002-0000002"}})["Item"]
    o = json.loads(sample["order"]["S"])
    print(f"  normalised: amazon 303-0000002-0000002 status={o['status']} ({o['platform_status']}) "
          f"total={o['total']['amount']} {o['total']['currency']} shipped_at={o['shipped_at']} due={sample['due_bucket']['S']}")

    print("\n== polled again: nothing changed at the marketplaces, so nothing is written or queued")
    poll(base, ddb, orders)
    second = counts(ddb, orders)
    print(f"  order events before {first['event']}, after {second['event']}")
    assert second == first, (first, second)


if __name__ == "__main__":
    main()
