#!/usr/bin/env python3
"""Checks the rules of the house on template.yaml, after SAM's own transform (what CloudFormation deploys).

- Least privilege: no role carries a managed policy; no statement allows "*" or "service:*" actions or a
  bare "*" resource.
- The audit log (DataRequestsTable, partition `audit`) is append-only: every role allowed to write or delete
  in that table carries a Deny of DeleteItem, BatchWriteItem and PartiQLDelete on the table conditioned on
  `ForAnyValue:StringEquals` `dynamodb:LeadingKeys` containing `audit` (AUDIT_DELETE_EXEMPT is empty:
  entries age out through TTL).
- The merchant API cannot write API keys: the role of every function serving a merchant API route
  (MERCHANT_PATHS) that may write MessagingTable carries a Deny of every item write there conditioned on
  `ForAnyValue:StringLike` `dynamodb:LeadingKeys` matching `merchant-key#*`.
- Every DynamoDB table has TTL enabled on `expires_at`, server-side encryption, and point-in-time recovery
  whose recovery period is at most 30 days (backups age out within the backup window; the default is 35).
- Every SQS event source reports batch item failures, its queue's visibility timeout is at least six times
  the function's timeout, the queue has a redrive policy, and its DLQ has a depth alarm. A function with
  reserved concurrency gets throttled deliveries, each one a receive: its queue's maxReceiveCount is at
  least 20 (MIN_RECEIVES_THROTTLED). And a message that fails every time reaches the DLQ before it expires:
  maxReceiveCount x visibility timeout is within the queue's retention period.
- No queue keeps a message more than 14 days (MAX_QUEUE_RETENTION): queues may carry personal data that an
  erasure cannot reach, so they keep it less than the shortest window that applies (30 days).
- Every function runs on provided.al2023 with its own log group of finite retention.
- Alarms: every function has an AWS/Lambda Errors and a Throttles alarm (dimension FunctionName), every HTTP
  API an AWS/ApiGateway 5xx alarm (dimension ApiId); every alarm notifies the alarm topic (ALARM_TOPIC),
  and the topic has a subscription.
- Every HTTP API stage writes access logs to a log group of this template kept at most 30 days, in a JSON
  format that names no body, header, authorizer context or request input (ACCESS_LOG_FORBIDDEN).
- Throttling per route: every HTTP API stage has DefaultRouteSettings and every route of its API has its
  own RouteSettings entry, each with a burst and a rate limit; no entry names a route the API lacks
  (CloudFormation refuses those).
- Every S3 bucket is encrypted, blocks public access and has an expiring lifecycle rule (its retention window).
Exits non-zero with one line per violation.
"""
import json
import os
import pathlib
import sys

from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parents[2]


class NoManagedPolicies:
    """The transform asks for managed policy ARNs only when a template names them; this one names none."""

    def load(self):
        return {}


def as_list(v):
    return v if isinstance(v, list) else [v]


# Item writes of DynamoDB (transactions are authorised as these, per item).
WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}
AUDIT_TABLE = "DataRequestsTable"
AUDIT_DELETES = {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete"}
ALARM_TOPIC = "AlarmTopic"
# What an access log format must not mention: what is sent, not how it went.
ACCESS_LOG_FORBIDDEN = ("body", "header", "$context.authorizer", "$input", "$request", "$stagevariables")
# Receives a queue allows before its DLQ when its function has reserved concurrency (throttles are receives).
MIN_RECEIVES_THROTTLED = 20
KEYS_TABLE = "MessagingTable"
# Path prefixes of the merchant API (API key per merchant).
MERCHANT_PATHS = ("/consent/", "/data-requests")
# Tables whose every copy must be gone with the data: a point-in-time copy would outlive a window shorter
# than its own (Amazon buyer data: 30 days after shipment).
NO_POINT_IN_TIME_COPY = {"OrdersTable": "Amazon buyer data must not outlive 30 days after shipment"}
MAX_QUEUE_RETENTION = 14 * 86400

# Role -> audit-partition deletes it may keep, with the reason. None: audit entries age out through
# DynamoDB TTL (the sweep only reports them, shared/src/usecases/sweep.rs).
AUDIT_DELETE_EXEMPT: dict = {}


def logical(ref):
    if isinstance(ref, dict):
        if "Ref" in ref:
            return ref["Ref"]
        if "Fn::GetAtt" in ref:
            g = ref["Fn::GetAtt"]
            return (g if isinstance(g, list) else g.split("."))[0]
    return None


def statements(role):
    for pol in role["Properties"].get("Policies", []):
        yield from as_list(pol["PolicyDocument"]["Statement"])


def table_of(resource):
    """The table a statement's resource is (not one of its indexes), or None."""
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
        if text.startswith("${") and text.endswith(".Arn}") and text.count("${") == 1:
            return text[2:-5]
        return None
    return logical(resource)


def guards_partition(st, table, operator, key):
    """A Deny on `table` whose condition `operator` matches leading key `key`."""
    if st.get("Effect") != "Deny" or table not in {table_of(r) for r in as_list(st.get("Resource", []))}:
        return False
    cond = st.get("Condition", {})
    if set(cond) != {operator} or set(cond[operator]) != {"dynamodb:LeadingKeys"}:
        return False  # another condition would narrow the Deny
    return key in as_list(cond[operator]["dynamodb:LeadingKeys"])


HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "ANY"}


def routes(res):
    """(api, route key, function) for every route of every HTTP API, from the OpenAPI body SAM writes."""
    out = []
    for api, r in res.items():
        if r["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        for path, methods in r["Properties"].get("Body", {}).get("paths", {}).items():
            for method, op in methods.items():
                if method == "x-amazon-apigateway-any-method":
                    method = "ANY"
                elif method.upper() not in HTTP_METHODS:
                    continue  # path-level `parameters` and the like
                uri = op.get("x-amazon-apigateway-integration", {}).get("uri", {})
                text = uri.get("Fn::Sub", "") if isinstance(uri, dict) else str(uri)
                text = text if isinstance(text, str) else text[0]
                fn = text.split("/functions/${", 1)[1].split(".Arn}", 1)[0] if "/functions/${" in text else None
                key = "$default" if path == "$default" else f"{method.upper()} {path}"
                out.append((api, key, fn))
    return out


def allowed_writes(sts, table):
    return {
        a
        for st in sts
        if st.get("Effect") == "Allow" and table in {table_of(x) for x in as_list(st.get("Resource", []))}
        for a in as_list(st.get("Action", []))
        if a in WRITES
    }


def denied_on(sts, table, operator, key):
    return {a for st in sts if guards_partition(st, table, operator, key) for a in as_list(st.get("Action", []))}


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the transform needs a region to exist
    sam, errors = decode_str((ROOT / "template.yaml").read_text())
    if errors:
        sys.exit(f"template.yaml does not parse: {errors}")
    for r in sam["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://packaged/code.zip"  # what `sam package` puts there
    cfn = transform(sam, {}, NoManagedPolicies())
    res = cfn["Resources"]
    bad = []

    for name, r in res.items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        p = r["Properties"]
        if p.get("ManagedPolicyArns"):
            bad.append(f"{name}: managed policies {p['ManagedPolicyArns']}")
        for pol in p.get("Policies", []):
            for st in as_list(pol["PolicyDocument"]["Statement"]):
                for a in as_list(st.get("Action", [])):
                    if a == "*" or (isinstance(a, str) and a.endswith(":*")):
                        bad.append(f"{name}: wildcard action {a}")
                for rs in as_list(st.get("Resource", [])):
                    if rs == "*":
                        bad.append(f"{name}: resource '*' for {st.get('Action')}")

    if AUDIT_TABLE not in res:
        bad.append(f"{AUDIT_TABLE}: missing (it holds the audit log)")
    for name, r in res.items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        sts = list(statements(r))
        if not allowed_writes(sts, AUDIT_TABLE):
            continue
        denied = denied_on(sts, AUDIT_TABLE, "ForAnyValue:StringEquals", "audit")
        missing = AUDIT_DELETES - denied - AUDIT_DELETE_EXEMPT.get(name, set())
        if missing:
            bad.append(f"{name}: may write {AUDIT_TABLE} but no Deny of {sorted(missing)} on leading key 'audit'")

    merchant_fns = {fn for _, key, fn in routes(res) if key.split(" ", 1)[-1].startswith(MERCHANT_PATHS)}
    if not merchant_fns:
        bad.append(f"no function serves the merchant API ({', '.join(MERCHANT_PATHS)})")
    for fn in sorted(merchant_fns):
        role = logical(res.get(fn, {}).get("Properties", {}).get("Role"))
        if role not in res:
            bad.append(f"{fn}: serves the merchant API without a role of this template")
            continue
        sts = list(statements(res[role]))
        if not allowed_writes(sts, KEYS_TABLE):
            continue
        missing = WRITES - denied_on(sts, KEYS_TABLE, "ForAnyValue:StringLike", "merchant-key#*")
        if missing:
            bad.append(f"{role}: may write {KEYS_TABLE} but no Deny of {sorted(missing)} on leading key 'merchant-key#*'")

    for name, r in res.items():
        if r["Type"] != "AWS::DynamoDB::Table":
            continue
        p = r["Properties"]
        ttl = p.get("TimeToLiveSpecification", {})
        if not (ttl.get("Enabled") and ttl.get("AttributeName") == "expires_at"):
            bad.append(f"{name}: TTL on expires_at not enabled")
        if not p.get("SSESpecification", {}).get("SSEEnabled"):
            bad.append(f"{name}: no server-side encryption")
        pitr = p.get("PointInTimeRecoverySpecification", {})
        if name in NO_POINT_IN_TIME_COPY:
            if pitr.get("PointInTimeRecoveryEnabled") is not False:
                bad.append(f"{name}: must keep no point-in-time copy ({NO_POINT_IN_TIME_COPY[name]})")
        elif not pitr.get("PointInTimeRecoveryEnabled"):
            bad.append(f"{name}: no point-in-time recovery")
        elif int(pitr.get("RecoveryPeriodInDays", 35)) > 30:
            bad.append(f"{name}: point-in-time recovery keeps {pitr.get('RecoveryPeriodInDays', 35)} days (at most 30)")

    # Queues may hold personal data an erasure cannot reach (a send request's phone number, a person's
    # own data request's reply address): none keeps a message longer than the shortest window that
    # applies to what it carries (30 days: request logs, backups), with margin.
    for name, r in res.items():
        if r["Type"] == "AWS::SQS::Queue":
            retention = int(r.get("Properties", {}).get("MessageRetentionPeriod", 345600))
            if retention > MAX_QUEUE_RETENTION:
                bad.append(f"{name}: keeps messages {retention} s (at most {MAX_QUEUE_RETENTION} s, 14 days)")

    alarmed = {
        logical(d["Value"])
        for r in res.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        for d in r["Properties"].get("Dimensions", [])
        if d.get("Name") == "QueueName"
    }
    for name, r in res.items():
        if r["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        p = r["Properties"]
        queue = logical(p["EventSourceArn"])
        fn = logical(p["FunctionName"])
        if "ReportBatchItemFailures" not in p.get("FunctionResponseTypes", []):
            bad.append(f"{name}: no ReportBatchItemFailures")
        qp = res[queue].get("Properties", {})
        timeout = res[fn]["Properties"].get("Timeout", 3)
        if int(qp.get("VisibilityTimeout", 30)) < 6 * int(timeout):
            bad.append(f"{queue}: visibility timeout below 6 x {fn} timeout ({timeout} s)")
        if "RedrivePolicy" not in qp:
            bad.append(f"{queue}: no redrive policy (DLQ)")
        else:
            dlq = logical(qp["RedrivePolicy"]["deadLetterTargetArn"])
            if dlq not in alarmed:
                bad.append(f"{dlq}: no depth alarm")
            receives = int(qp["RedrivePolicy"].get("maxReceiveCount", 0))
            reserved = res[fn]["Properties"].get("ReservedConcurrentExecutions")
            if reserved is not None and receives < MIN_RECEIVES_THROTTLED:
                bad.append(
                    f"{queue}: maxReceiveCount {receives} below {MIN_RECEIVES_THROTTLED} for {fn}, whose reserved "
                    f"concurrency ({reserved}) throttles deliveries"
                )
            visibility = int(qp.get("VisibilityTimeout", 30))
            retention = int(qp.get("MessageRetentionPeriod", 345600))
            if receives * visibility > retention:
                bad.append(
                    f"{queue}: {receives} receives x {visibility} s outlast the {retention} s retention "
                    "(failing messages expire instead of reaching the DLQ)"
                )

    for name, r in res.items():
        if r["Type"] != "AWS::Lambda::Function":
            continue
        p = r["Properties"]
        if p.get("Runtime") != "provided.al2023":
            bad.append(f"{name}: runtime {p.get('Runtime')}")
        group = logical(p.get("LoggingConfig", {}).get("LogGroup"))
        if not group or not res.get(group, {}).get("Properties", {}).get("RetentionInDays"):
            bad.append(f"{name}: no own log group with a retention period")

    def alarmed_on(namespace, metric, dimension):
        return {
            logical(d["Value"])
            for r in res.values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"].get("Namespace") == namespace
            and r["Properties"].get("MetricName") == metric
            for d in r["Properties"].get("Dimensions", [])
            if d.get("Name") == dimension
        }

    for kind, namespace, metrics, dimension in (
        ("AWS::Lambda::Function", "AWS/Lambda", ("Errors", "Throttles"), "FunctionName"),
        ("AWS::ApiGatewayV2::Api", "AWS/ApiGateway", ("5xx",), "ApiId"),
    ):
        for metric in metrics:
            covered = alarmed_on(namespace, metric, dimension)
            for name, r in res.items():
                if r["Type"] == kind and name not in covered:
                    bad.append(f"{name}: no {namespace} {metric} alarm")
    if res.get(ALARM_TOPIC, {}).get("Type") != "AWS::SNS::Topic":
        bad.append(f"{ALARM_TOPIC}: no such SNS topic")
    elif not any(
        r["Type"] == "AWS::SNS::Subscription" and logical(r["Properties"].get("TopicArn")) == ALARM_TOPIC
        for r in res.values()
    ):
        bad.append(f"{ALARM_TOPIC}: nobody subscribes to it")
    for name, r in res.items():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            if ALARM_TOPIC not in {logical(a) for a in as_list(r["Properties"].get("AlarmActions", []))}:
                bad.append(f"{name}: its AlarmActions do not notify {ALARM_TOPIC}")

    staged = set()
    for name, r in res.items():
        if r["Type"] != "AWS::ApiGatewayV2::Stage":
            continue
        p = r["Properties"]
        staged.add(logical(p.get("ApiId")))
        logs = p.get("AccessLogSettings")
        if not logs:
            bad.append(f"{name}: no access logs")
            continue
        group = logical(logs.get("DestinationArn"))
        days = res.get(group, {}).get("Properties", {}).get("RetentionInDays")
        if res.get(group, {}).get("Type") != "AWS::Logs::LogGroup":
            bad.append(f"{name}: access logs not sent to a log group of this template")
        elif not days or int(days) > 30:
            bad.append(f"{name}: access log group {group} keeps {days or 'forever'} (at most 30 days)")
        fmt = logs.get("Format")
        try:
            fields = json.loads(fmt) if isinstance(fmt, str) else None
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            bad.append(f"{name}: access log format is not a JSON object")
        else:
            said = [w for w in ACCESS_LOG_FORBIDDEN if w in fmt.lower()]
            if said:
                bad.append(f"{name}: access log format mentions {said}")
    for name, r in res.items():
        if r["Type"] == "AWS::ApiGatewayV2::Api" and name not in staged:
            bad.append(f"{name}: no stage, so no access logs")

    throttles = ("ThrottlingBurstLimit", "ThrottlingRateLimit")
    for name, r in res.items():
        if r["Type"] != "AWS::ApiGatewayV2::Stage":
            continue
        p = r["Properties"]
        api = logical(p.get("ApiId"))
        if not all(k in p.get("DefaultRouteSettings", {}) for k in throttles):
            bad.append(f"{name}: DefaultRouteSettings without both throttling limits")
        settings = p.get("RouteSettings", {})
        keys = {key for a, key, _ in routes(res) if a == api}
        for key in sorted(keys):
            if not all(k in settings.get(key, {}) for k in throttles):
                bad.append(f"{name}: route '{key}' has no RouteSettings entry with both throttling limits")
        for key in sorted(set(settings) - keys):
            bad.append(f"{name}: RouteSettings names '{key}', which {api} has no route for")

    for name, r in res.items():
        if r["Type"] != "AWS::S3::Bucket":
            continue
        p = r.get("Properties", {})
        if not p.get("BucketEncryption"):
            bad.append(f"{name}: no default encryption")
        pab = p.get("PublicAccessBlockConfiguration", {})
        if not all(pab.get(k) for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")):
            bad.append(f"{name}: public access not fully blocked")
        rules = p.get("LifecycleConfiguration", {}).get("Rules", [])
        if not any(x.get("Status") == "Enabled" and x.get("ExpirationInDays") for x in rules):
            bad.append(f"{name}: no expiring lifecycle rule")

    for line in bad:
        print(f"template.yaml: {line}")
    if bad:
        sys.exit(1)
    print(f"template.yaml: house rules hold ({len(res)} resources after the SAM transform)")


if __name__ == "__main__":
    main()
