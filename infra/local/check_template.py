#!/usr/bin/env python3
"""Checks the rules of the house on template.yaml, after SAM's own transform (what CloudFormation deploys).

- Least privilege: no role carries a managed policy; no statement allows "*" or "service:*" actions or a
  bare "*" resource.
- Every DynamoDB table has TTL enabled on `expires_at`, server-side encryption, and point-in-time recovery
  whose recovery period is at most 30 days (backups age out within the backup window; the default is 35).
- Every SQS event source reports batch item failures, its queue's visibility timeout is at least six times
  the function's timeout, the queue has a redrive policy, and its DLQ has a depth alarm.
- Every function runs on provided.al2023 with its own log group of finite retention.
- Every S3 bucket is encrypted, blocks public access and has an expiring lifecycle rule (its retention window).
Exits non-zero with one line per violation.
"""
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


def logical(ref):
    if isinstance(ref, dict):
        if "Ref" in ref:
            return ref["Ref"]
        if "Fn::GetAtt" in ref:
            g = ref["Fn::GetAtt"]
            return (g if isinstance(g, list) else g.split("."))[0]
    return None


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
        if not pitr.get("PointInTimeRecoveryEnabled"):
            bad.append(f"{name}: no point-in-time recovery")
        elif int(pitr.get("RecoveryPeriodInDays", 35)) > 30:
            bad.append(f"{name}: point-in-time recovery keeps {pitr.get('RecoveryPeriodInDays', 35)} days (at most 30)")

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

    for name, r in res.items():
        if r["Type"] != "AWS::Lambda::Function":
            continue
        p = r["Properties"]
        if p.get("Runtime") != "provided.al2023":
            bad.append(f"{name}: runtime {p.get('Runtime')}")
        group = logical(p.get("LoggingConfig", {}).get("LogGroup"))
        if not group or not res.get(group, {}).get("Properties", {}).get("RetentionInDays"):
            bad.append(f"{name}: no own log group with a retention period")

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
