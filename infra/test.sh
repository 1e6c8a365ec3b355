#!/usr/bin/env bash
# Runs every test: installs the pinned tools into infra/.venv, lints template.yaml, starts the AWS
# emulator on a free loopback port, provisions it from template.yaml, runs the Rust tests against it,
# runs the quick soak on a fresh emulator, smoke-runs the local stack (infra/dev.sh --once) on its own
# ports, and stops everything it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_rust
ensure_venv

log "cfn-lint template.yaml"
"$VENV/bin/cfn-lint" "$ROOT/template.yaml"
"$VENV/bin/python" "$ROOT/infra/local/check_template.py"

trap stop_moto EXIT
start_moto "$(free_port)"
provision "$STATE/test-manifest.json"
export NEX_STACK_MANIFEST="$STATE/test-manifest.json"

log "cargo test (unit, property and integration tests)"
cargo test --workspace --manifest-path "$ROOT/Cargo.toml" "$@"

log "nexctl from a fresh shell: endpoint, region and credentials from the manifest alone"
nexctl="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nexctl"
cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p nexctl "$@"
env -i PATH="$PATH" HOME="$HOME" "$nexctl" --manifest "$STATE/test-manifest.json" sweep status | grep -q "swept_through" \
  || { log "nexctl --manifest did not work from a fresh shell"; exit 1; }
stop_moto

# The soak needs a stack of its own: its runner polls the stack's queues (the suite's tests use copies).
log "soak, quick: Stripe and WhatsApp deliveries under injected AWS faults and cut-off invocations (a fresh emulator)"
start_moto "$(free_port)"
provision "$STATE/soak-manifest.json" >/dev/null
NEX_STACK_MANIFEST="$STATE/soak-manifest.json" cargo test --manifest-path "$ROOT/Cargo.toml" -p tests --test soak "$@" \
  -- --ignored --nocapture 2>&1 | grep -v '^{'
stop_moto

log "smoke run of the local stack (infra/dev.sh --once)"
out=$(NEX_PORT=$(free_port) NEX_AWS_PORT=$(free_port) bash "$ROOT/infra/dev.sh" --once 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -n 20
for want in "accepted evt_1NexDemoA01" "duplicate evt_1NexDemoA02" "signature_mismatch" "pi_3NexDemoOrderA      partially_refunded" "DLQ depth: 0" \
  "challenge echoed: 1158201444" "opt-outs recorded for every merchant: 1" "refused:opted_out" \
  "nex.subject-export/1" "anonymise: 1" "order metadata left               0" "audit log verified" \
  "amazon: callback -> 201" "the same state again -> 400" "bol: client credentials checked at bol -> 201" \
  "order events for forwarding: 7" "order events before 7, after 7" \
  "url_resolves_to_a_forbidden_address" "payment.updated" "fail then ok" "verified=True signatures=1" \
  "only its own" "rollups of 3 days changed" "(unmapped, account 1234567890)"; do
  grep -q "$want" <<<"$out" || { log "local stack smoke run: expected '$want'"; exit 1; }
done
log "local stack smoke run: ok"
