#!/usr/bin/env bash
# Benchmarks; prints tables, asserts nothing.
#   1. criterion: Stripe verify + parse of a ~3 KB event (cargo bench)
#   2. each release binary: size, cold start to ready-for-first-event against a local Lambda Runtime
#      API, first-event time and peak RSS (infra/bench/coldstart.py)
# AWS requests per Stripe delivery are counted by the integration tests (2 for a new event, 1 for a
# duplicate), since they are a property to keep, not a speed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rust
ensure_venv
target="${CARGO_TARGET_DIR:-$ROOT/target}"

log "criterion: webhook verify + parse (Stripe 3 KB event, WhatsApp 10-message batch)"
cargo bench --manifest-path "$ROOT/Cargo.toml" -p nex-shared --bench stripe_verify --bench whatsapp_verify -- --warm-up-time 1 --measurement-time 3 2>&1 \
  | grep -E "^(stripe|whatsapp)_webhook/|time:" || true

log "release build of the functions"
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p stripe-webhook -p payments-worker -p whatsapp-webhook \
  -p messaging-worker -p notifications-sender -p consent-api

trap stop_moto EXIT
start_moto "$(free_port)"
provision "$STATE/bench-manifest.json" >/dev/null
"$VENV/bin/python" "$ROOT/infra/bench/coldstart.py" --manifest "$STATE/bench-manifest.json" --target-dir "$target" "$@"
