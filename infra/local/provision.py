#!/usr/bin/env python3
"""Provision the local AWS emulator from template.yaml, the one source of truth.

Reads the SAM template with cfn-lint's CloudFormation decoder, creates every table (with its GSIs and
TTL setting), queue (DLQs first, with redrive policies), bucket and secret through the AWS APIs, seeds
the development secrets, and writes a manifest that the local runner and the integration tests read:
physical names, each function's resolved environment, its HTTP routes, SQS event sources and schedules.

moto's CloudFormation drops TTL and skips secrets, schedules and HTTP APIs, so resources are created
one by one here instead. What has no local counterpart is left out: IAM roles, log groups, alarms, the alarm
topic and its (conditional) subscription, point-in-time recovery, and the API stage's access logs and
throttles (check_template.py checks those in the template).
"""
import argparse
import json
import os
import pathlib
import secrets as pysecrets
import sys

import boto3
from cfnlint.decode import decode_str

ACCOUNT = "123456789012"
HERE = pathlib.Path(__file__).resolve().parent


class Stack:
    def __init__(self, template, name, region, endpoint):
        self.t = template
        self.name = name
        self.region = region
        self.res = template.get("Resources", {})
        self.params = {k: v.get("Default") for k, v in template.get("Parameters", {}).items()}
        kw = dict(region_name=region, endpoint_url=endpoint)
        self.ddb = boto3.client("dynamodb", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.sm = boto3.client("secretsmanager", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.physical = {}  # logical id -> value of Ref
        self.attrs = {}  # (logical id, attribute) -> value of GetAtt

    # ------------------------------------------------------------ intrinsic functions
    def resolve(self, v):
        if isinstance(v, dict) and len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attrs[(logical, attr)]
            if k == "Fn::Sub":
                return self.sub(arg)
            if k == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
        if isinstance(v, dict):
            return {k: self.resolve(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.resolve(x) for x in v]
        return v

    def condition(self, name):
        """A condition of the template's `Conditions` (Fn::Not, Fn::Equals, Fn::And, Fn::Or)."""
        def ev(c):
            (k, arg), = c.items()
            if k == "Fn::Not":
                return not ev(arg[0])
            if k == "Fn::Equals":
                return str(self.resolve(arg[0])) == str(self.resolve(arg[1]))
            if k == "Fn::And":
                return all(ev(x) for x in arg)
            if k == "Fn::Or":
                return any(ev(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
            sys.exit(f"condition {name}: {k} is not known to the local stack")
        return ev(self.t.get("Conditions", {})[name])

    def ref(self, name):
        pseudo = {"AWS::StackName": self.name, "AWS::Region": self.region, "AWS::AccountId": ACCOUNT,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws"}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.physical[name]

    def sub(self, arg):
        text = arg if isinstance(arg, str) else arg[0]
        out, i = "", 0
        while i < len(text):
            j = text.find("${", i)
            if j < 0:
                out += text[i:]
                break
            k = text.index("}", j)
            out += text[i:j]
            var = text[j + 2 : k]
            out += str(self.attrs[tuple(var.split(".", 1))] if "." in var and not var.startswith("AWS::") else self.ref(var))
            i = k + 1
        return out

    def of_type(self, kind):
        return [(k, v) for k, v in self.res.items() if v.get("Type") == kind]

    def physical_name(self, logical):
        return f"{self.name}-{logical}"

    # ------------------------------------------------------------ resources
    def tables(self):
        ttl = {}
        for logical, r in self.of_type("AWS::DynamoDB::Table"):
            p = r["Properties"]
            name = self.resolve(p.get("TableName")) or self.physical_name(logical)
            args = dict(
                TableName=name,
                KeySchema=p["KeySchema"],
                AttributeDefinitions=p["AttributeDefinitions"],
                BillingMode=p.get("BillingMode", "PAY_PER_REQUEST"),
            )
            if p.get("GlobalSecondaryIndexes"):
                args["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
            if p.get("SSESpecification", {}).get("SSEEnabled"):
                args["SSESpecification"] = {"Enabled": True}
            if p.get("StreamSpecification"):
                args["StreamSpecification"] = {"StreamEnabled": True, **plain(p["StreamSpecification"])}
            created = self.ddb.create_table(**args)["TableDescription"]
            if created.get("LatestStreamArn"):
                self.attrs[(logical, "StreamArn")] = created["LatestStreamArn"]
            spec = p.get("TimeToLiveSpecification")
            if spec and spec.get("Enabled"):
                self.ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": spec["AttributeName"], "Enabled": True},
                )
                ttl[logical] = {"table": name, "attribute": spec["AttributeName"]}
            self.physical[logical] = name
            self.attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{self.region}:{ACCOUNT}:table/{name}"
        return ttl

    def queues(self):
        pending = self.of_type("AWS::SQS::Queue")
        # Dead-letter queues first: a queue's redrive policy names its DLQ's ARN.
        pending.sort(key=lambda kv: "RedrivePolicy" in kv[1].get("Properties", {}))
        queues = {}
        for logical, r in pending:
            p = r.get("Properties", {})
            name = self.resolve(p.get("QueueName")) or self.physical_name(logical)
            attributes = {}
            for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"):
                if key in p:
                    attributes[key] = str(self.resolve(p[key]))
            if p.get("SqsManagedSseEnabled"):
                attributes["SqsManagedSseEnabled"] = "true"
            if "RedrivePolicy" in p:
                attributes["RedrivePolicy"] = json.dumps(self.resolve(p["RedrivePolicy"]))
            url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = f"arn:aws:sqs:{self.region}:{ACCOUNT}:{name}"
            self.physical[logical] = url
            self.attrs[(logical, "Arn")] = arn
            self.attrs[(logical, "QueueName")] = name
            self.attrs[(logical, "QueueUrl")] = url
            queues[logical] = {"url": url, "arn": arn, "name": name, "attributes": attributes}
        return queues

    def secrets(self, seeds):
        out = {}
        for logical, r in self.of_type("AWS::SecretsManager::Secret"):
            p = r.get("Properties", {})
            name = self.resolve(p.get("Name")) or f"{self.name}/{logical}"
            if logical in seeds:
                value = seeds[logical]
            elif "GenerateSecretString" in p:
                value = pysecrets.token_urlsafe(48)
            else:
                value = self.resolve(p.get("SecretString", ""))
            arn = self.sm.create_secret(Name=name, SecretString=value)["ARN"]
            self.physical[logical] = arn
            out[logical] = {"name": name, "arn": arn}
        return out

    def buckets(self):
        out = {}
        for logical, r in self.of_type("AWS::S3::Bucket"):
            p = r.get("Properties", {})
            name = (self.resolve(p.get("BucketName")) or self.physical_name(logical)).lower()
            self.s3.create_bucket(Bucket=name)
            self.physical[logical] = name
            self.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
            out[logical] = name
        # What CloudFormation on moto would drop: applied with the SDK from the same definitions.
        for logical, r in self.of_type("AWS::S3::Bucket"):
            p, name = r.get("Properties", {}), out[logical]
            if p.get("BucketEncryption"):
                self.s3.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [
                            {"ApplyServerSideEncryptionByDefault": plain(x["ServerSideEncryptionByDefault"])}
                            for x in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                        ]
                    },
                )
            if p.get("PublicAccessBlockConfiguration"):
                self.s3.put_public_access_block(
                    Bucket=name, PublicAccessBlockConfiguration=plain(p["PublicAccessBlockConfiguration"])
                )
            rules = p.get("LifecycleConfiguration", {}).get("Rules", [])
            if rules:
                self.s3.put_bucket_lifecycle_configuration(
                    Bucket=name, LifecycleConfiguration={"Rules": [lifecycle_rule(x) for x in rules]}
                )
        return out

    def seed_items(self, items):
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        count = 0
        for logical, rows in items.items():
            if logical.startswith("_"):
                continue
            for row in rows:
                # Keys starting with "_" document a seed (e.g. the clear API key whose hash is stored).
                item = {k: ser.serialize(v) for k, v in row.items() if not k.startswith("_")}
                self.ddb.put_item(TableName=self.physical[logical], Item=item)
                count += 1
        return count

    def pipes(self):
        """EventBridge Pipes from a table's stream to a queue, as the local runner replays them: the event
        names and the key prefix the filter lets through, whether a record needs a `body`, and which of the
        message shape its input template makes (an inbox reference, a ledger key or an order event's key)."""
        arn_to_logical = {v: l for (l, a), v in self.attrs.items() if a == "Arn"}
        out = []
        for logical, r in self.of_type("AWS::Pipes::Pipe"):
            p = r["Properties"]
            filters = p.get("SourceParameters", {}).get("FilterCriteria", {}).get("Filters", [])
            if len(filters) != 1:
                sys.exit(f"{logical}: the local pipe reads exactly one filter")
            pattern = json.loads(self.resolve(filters[0]["Pattern"]))
            keys = pattern["dynamodb"]["Keys"]
            (key_attr, cond), = keys.items()
            template = p.get("TargetParameters", {}).get("InputTemplate", "")
            if '"inbox"' in template:
                message = "inbox"
            elif '"ledger"' in template:
                message = "ledger"
            elif '"order_event"' in template:
                message = "order_event"
            else:
                sys.exit(f"{logical}: the local pipe knows inbox, ledger and order_event messages only")
            target = arn_to_logical[self.resolve(p["Target"])]
            out.append({
                "name": logical,
                "stream_arn": self.resolve(p["Source"]),
                "key_attr": key_attr,
                "key_prefixes": [c["prefix"] for c in cond["S"]],
                "event_names": pattern.get("eventName", ["INSERT", "MODIFY"]),
                "require_body": "body" in pattern["dynamodb"].get("NewImage", {}),
                "message": message,
                "target": target,
                "target_url": self.physical[target],
            })
        return out

    def functions(self):
        glob = self.t.get("Globals", {}).get("Function", {})
        functions, routes, schedules = {}, [], []
        # The local runner serves every route itself; `${HttpApi}` in a URL names no real API here.
        for logical, _ in self.of_type("AWS::Serverless::HttpApi"):
            self.physical.setdefault(logical, "local")
        for logical, r in self.of_type("AWS::Serverless::Function"):
            p = r["Properties"]
            self.physical[logical] = self.physical_name(logical)
            env = dict(glob.get("Environment", {}).get("Variables", {}))
            env.update(p.get("Environment", {}).get("Variables", {}))
            binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical)
            functions[logical] = {
                "binary": binary,
                "timeout": p.get("Timeout", glob.get("Timeout", 3)),
                "env": {k: str(self.resolve(v)) for k, v in env.items()},
            }
            for ev_name, ev in p.get("Events", {}).items():
                ep = ev.get("Properties", {})
                if ev["Type"] == "HttpApi":
                    routes.append({"method": ep["Method"].upper(), "path": ep["Path"], "function": logical})
                elif ev["Type"] == "Schedule":
                    schedules.append({"name": ev_name, "function": logical, "expression": self.resolve(ep["Schedule"])})
        sources = []
        for logical, r in self.of_type("AWS::Lambda::EventSourceMapping"):
            p = r["Properties"]
            fn = p["FunctionName"]["Ref"]
            arn_to_logical = {v: l for (l, a), v in self.attrs.items() if a == "Arn"}
            queue_logical = arn_to_logical[self.resolve(p["EventSourceArn"])]
            sources.append(
                {
                    "function": fn,
                    "queue": queue_logical,
                    "queue_url": self.physical[queue_logical],
                    "batch_size": p.get("BatchSize", 10),
                    "report_batch_item_failures": "ReportBatchItemFailures" in p.get("FunctionResponseTypes", []),
                }
            )
        return functions, routes, schedules, sources


def plain(v):
    """cfn-lint's decoded nodes as plain dicts and lists (boto3 checks exact types)."""
    return json.loads(json.dumps(v))


def lifecycle_rule(r):
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    out = {"ID": r.get("Id", "rule"), "Status": r["Status"], "Filter": {"Prefix": r.get("Prefix", "")}}
    if "ExpirationInDays" in r:
        out["Expiration"] = {"Days": r["ExpirationInDays"]}
    if "NoncurrentVersionExpiration" in r:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": r["NoncurrentVersionExpiration"]["NoncurrentDays"]}
    if "AbortIncompleteMultipartUpload" in r:
        out["AbortIncompleteMultipartUpload"] = plain(r["AbortIncompleteMultipartUpload"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default=str(HERE.parent.parent / "template.yaml"))
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
    ap.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    ap.add_argument("--stack-name", default="nex-local")
    ap.add_argument("--seeds", default=str(HERE / "dev-secrets.json"))
    ap.add_argument("--items", default=str(HERE / "dev-seed.json"), help="items to put in tables, by logical id")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override")
    ap.add_argument("--out", required=True, help="where to write the manifest (JSON)")
    a = ap.parse_args()

    template, errors = decode_str(pathlib.Path(a.template).read_text())
    if errors:
        sys.exit(f"template.yaml does not parse: {errors}")
    stack = Stack(template, a.stack_name, a.region, a.endpoint)
    for kv in a.param:
        key, _, value = kv.partition("=")
        if key not in stack.params:
            sys.exit(f"--param {key}: template.yaml has no such parameter")
        stack.params[key] = value
    seeds = json.loads(pathlib.Path(a.seeds).read_text()) if a.seeds else {}
    ttl = stack.tables()
    queues = stack.queues()
    secrets = stack.secrets(seeds)
    buckets = stack.buckets()
    functions, routes, schedules, sources = stack.functions()
    pipes = stack.pipes()
    seeded = stack.seed_items(json.loads(pathlib.Path(a.items).read_text()) if a.items else {})
    manifest = {
        "endpoint": a.endpoint,
        "region": a.region,
        "stack_name": a.stack_name,
        "tables": {k: v for k, v in stack.physical.items() if k in dict(stack.of_type("AWS::DynamoDB::Table"))},
        "ttl": ttl,
        "queues": queues,
        "secrets": secrets,
        "buckets": buckets,
        "functions": functions,
        "routes": routes,
        "schedules": schedules,
        "sqs_sources": sources,
        "pipes": pipes,
    }
    pathlib.Path(a.out).write_text(json.dumps(manifest, indent=2))
    print(
        f"provisioned {len(ttl)} tables (TTL on), {len(queues)} queues, {len(secrets)} secrets, "
        f"{len(buckets)} buckets, {len(functions)} functions, {len(routes)} routes, {seeded} seed items -> {a.out}"
    )


if __name__ == "__main__":
    main()
