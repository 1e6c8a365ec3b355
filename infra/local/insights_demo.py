#!/usr/bin/env python3
"""Show ad insights in the local suite: the platform's ad account (added with nexctl before this runs) is
pulled from the local Graph API stand-in (/_local/meta), two of its campaigns mapped to two retailers by
queue message (as the platform's campaign tooling would), the third left unmapped; a retailer reads its
daily rollup through the merchant API (JSON and CSV); Meta restates the last three days and the next pull
replaces them and recomputes the rollups.
"""
import argparse
import json
import time
import urllib.request

import boto3

KEY = "local-dev-merchant-api-key"
ACCOUNT = "1234567890"


def get(url, key=KEY):
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read().decode()


def post(url, body=b""):
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read().decode()


def account(ddb, table):
    return ddb.get_item(TableName=table, Key={"pk": {"S": "accounts"}, "sk": {"S": f"account#{ACCOUNT}"}}).get("Item", {})


def pull(base, ddb, table):
    before = account(ddb, table).get("last_success_at", {}).get("N")
    post(f"{base}/_local/schedules/Pull")
    for _ in range(120):
        a = account(ddb, table)
        done = a.get("last_success_at", {}).get("N")
        if done and done != before and not a.get("lease_until", {}).get("N"):
            return a
        time.sleep(0.25)
    raise SystemExit("the insights pull did not finish")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--url", required=True)
    a = ap.parse_args()
    m = json.loads(open(a.manifest).read())
    ddb = boto3.client("dynamodb", endpoint_url=m["endpoint"], region_name=m["region"])
    sqs = boto3.client("sqs", endpoint_url=m["endpoint"], region_name=m["region"])
    table = m["tables"]["InsightsTable"]
    queue = m["queues"]["InsightsQueue"]["url"]
    print("\n== ad insights: the platform's ad account act_1234567890 (local Graph stand-in, Marketing API v27.0)")
    for campaign, retailer in (("23850000000000001", "merchant-demo-1"), ("23850000000000002", "merchant-demo-2")):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
            {"campaign_mapped": {"campaign_id": campaign, "account_id": ACCOUNT, "retailer": retailer}}))
        print(f"  campaign {campaign} mapped to {retailer} (queue message)")
    time.sleep(1.5)
    acc = pull(a.url, ddb, table)
    print(f"  pulled: currency {acc['currency']['S']}, time zone {acc['timezone_name']['S']}, "
          f"last error {acc.get('last_error', {}).get('S', 'none')}")
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3600))
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3600 - 2 * 86400))
    _, body = get(f"{a.url}/ad-performance?since={since}&until={today}")
    perf = json.loads(body)
    for d in perf["days"]:
        print(f"  merchant-demo-1 {d['date']}: impressions {d['impressions']}, clicks {d['clicks']}, "
              f"spend {d['spend']} {d['currency']}, ctr {d['ctr']}%, cpc {d['cpc']}")
    print(f"  its campaigns in the answer: {sorted({c['campaign_id'] for c in perf['campaigns']})} (only its own)")
    _, csv = get(f"{a.url}/ad-performance?since={today}&until={today}&format=csv")
    print("  CSV: " + csv.splitlines()[0])
    print("       " + csv.splitlines()[1])
    before = {d["date"]: d["impressions"] for d in perf["days"]}
    post(f"{a.url}/_local/meta/_restate")
    pull(a.url, ddb, table)
    _, body = get(f"{a.url}/ad-performance?since={since}&until={today}")
    after = {d["date"]: d["impressions"] for d in json.loads(body)["days"]}
    changed = sorted(d for d in after if after[d] != before.get(d))
    print(f"  Meta restated the last 3 days; after the next pull the rollups of {len(changed)} days changed: "
          + ", ".join(f"{d} {before.get(d)} -> {after[d]}" for d in changed))
    assert len(changed) == 3, (before, after)


if __name__ == "__main__":
    main()
