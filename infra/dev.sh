#!/usr/bin/env bash
# Starts the whole suite locally and shows it doing its job.
#
#   infra/dev.sh            emulator + suite, replays events/, then keeps running until Ctrl-C
#   infra/dev.sh --once     the same, then stops (a smoke run)
#
# Ports: the suite's HTTP API on 127.0.0.1:${NEX_PORT:-3000}, the AWS emulator on 127.0.0.1:${NEX_AWS_PORT:-4566}.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

once=false
[[ "${1:-}" == "--once" ]] && once=true
port=${NEX_PORT:-3000}
aws_port=${NEX_AWS_PORT:-4566}

ensure_rust
ensure_venv
log "building the suite (first build takes a few minutes)"
cargo build -p nex-local -p nexctl --manifest-path "$ROOT/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nex-local"
nexctl="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nexctl"

trap 'kill ${RUNNER_PID:-} $(cat "$STATE/receiver.pid" 2>/dev/null) 2>/dev/null; stop_moto; log "stopped"' EXIT
start_moto "$aws_port"
# The local stack stands in for the WhatsApp Cloud API on its own port (no network here).
local_url="http://127.0.0.1:$port"
provision "$STATE/manifest.json" --param "WhatsAppApiBaseUrl=$local_url/_local/graph" \
  --param "AmazonLwaUrl=$local_url/_local/amazon" --param "AmazonSpApiUrl=$local_url/_local/amazon" \
  --param "AmazonConsentUrl=$local_url/_local/amazon" --param "EbayAuthUrl=$local_url/_local/ebay" \
  --param "EbayApiUrl=$local_url/_local/ebay" --param "EbayConsentUrl=$local_url/_local/ebay" \
  --param "EbayIdentityUrl=$local_url/_local/ebay" \
  --param "BolLoginUrl=$local_url/_local/bol" --param "BolApiUrl=$local_url/_local/bol" \
  --param "EbayDeletionEndpointUrl=$local_url/webhooks/ebay/account-deletion" \
  --param "GraphApiBaseUrl=$local_url/_local/meta"

"$bin" --manifest "$STATE/manifest.json" --port "$port" --reap-every-secs 10 --ttl-lag-secs 30 \
  >"$STATE/suite.log" 2>&1 &
RUNNER_PID=$!
for _ in $(seq 1 100); do
  grep -q '"local stack ready"' "$STATE/suite.log" 2>/dev/null && break
  kill -0 "$RUNNER_PID" 2>/dev/null || { cat "$STATE/suite.log"; log "the suite failed to start"; exit 1; }
  sleep 0.1
done
log "suite listening on http://127.0.0.1:$port (logs: infra/.local/suite.log)"

"$VENV/bin/python" "$ROOT/infra/local/forwarding_demo.py" setup --manifest "$STATE/manifest.json" --url "http://127.0.0.1:$port"

"$VENV/bin/python" "$ROOT/infra/local/replay.py" --manifest "$STATE/manifest.json" \
  --url "http://127.0.0.1:$port/webhooks/stripe"

"$VENV/bin/python" "$ROOT/infra/local/marketplaces_demo.py" --manifest "$STATE/manifest.json" --url "http://127.0.0.1:$port"

"$nexctl" --manifest "$STATE/manifest.json" insights add-account act_1234567890
"$VENV/bin/python" "$ROOT/infra/local/insights_demo.py" --manifest "$STATE/manifest.json" --url "http://127.0.0.1:$port"
"$nexctl" --manifest "$STATE/manifest.json" insights campaigns
"$nexctl" --manifest "$STATE/manifest.json" insights accounts

echo
echo "== forwarding: what the demo merchant's system received"
"$VENV/bin/python" "$ROOT/infra/local/forwarding_demo.py" report --manifest "$STATE/manifest.json" --url "http://127.0.0.1:$port"
"$nexctl" --manifest "$STATE/manifest.json" endpoints list --merchant merchant-demo-1

echo
echo "== the operator CLI: nexctl --manifest infra/.local/manifest.json audit show / audit verify"
"$nexctl" --manifest "$STATE/manifest.json" audit show --limit 8
"$nexctl" --manifest "$STATE/manifest.json" audit verify

if $once; then exit 0; fi
cat <<MSG

The suite keeps running. Try:
  $nexctl --manifest infra/.local/manifest.json sweep run --dry-run
  $nexctl --manifest infra/.local/manifest.json dsr open --kind deletion --phone +16505551234
  $nexctl --manifest infra/.local/manifest.json dlq list
  aws --endpoint-url $AWS_ENDPOINT_URL dynamodb scan --table-name nex-local-PaymentsTable
  infra/.venv/bin/python infra/local/replay.py --manifest infra/.local/manifest.json
  tail -f infra/.local/suite.log
Ctrl-C stops the suite and the emulator.
MSG
wait "$RUNNER_PID"
