#!/usr/bin/env bash
# Benchmarks; prints tables, asserts nothing.
#   infra/bench.sh          1. criterion: Stripe verify + parse of a ~3 KB event (cargo bench)
#                           2. each release binary: size, cold start to ready-for-first-event against a
#                              local Lambda Runtime API, first-event time and peak RSS (infra/bench/coldstart.py)
#   infra/bench.sh optin    4. 1,000 concurrent opt-ins from 50 merchants through the merchant API, resent,
#                              then audited from the ledger: answers, ledger = audit entries, appends/s
#   infra/bench.sh orders   6. marketplace orders: normalised per second per marketplace, platform and AWS
#                              requests per new order and per unchanged re-poll, a schedule run over 1,000
#                              connections with 1% slow (tests/benches/orders.rs)
#   infra/bench.sh forwarding 7. forwarding: deliveries per second of one sender, AWS requests per delivery
#                              (dispatch, first attempt, failed attempt, retries), order stored -> delivered
#                              p50/p99 with the local stack's loops (tests/benches/forwarding.rs), and
#                              criterion's signing time per KB (shared/benches/webhook_sign.rs)
#   infra/bench.sh insights   8. ad insights: rows parsed per second, Graph requests and AWS writes per account per
#                              run (first, unchanged, 3 days restated), 200 accounts under one app-wide rate
#                              limit with 10 pullers (tests/benches/insights.rs)
#   infra/bench.sh fuzz     5. every parser of outside input fuzzed from the platforms' payloads (tests/tests/fuzz.rs):
#                              inputs tried and panics per target (NEX_FUZZ_INPUTS, 100,000 by default)
#   infra/bench.sh soak     9. the soak: 10,000 Stripe + 10,000 WhatsApp deliveries, 30% duplicates, 32 at a time,
#                              under 10% injected AWS faults and 1% cut-off invocations, reconciled (lost, doubled,
#                              DLQs, answer times, AWS requests per delivery), then the retention sweep under
#                              faults (tests/src/soak.rs; NEX_SOAK_STRIPE, NEX_SOAK_WHATSAPP, NEX_SOAK_FAULTS,
#                              NEX_SOAK_CUTS, NEX_SOAK_SEED, NEX_SOAK_SWEEP_ITEMS)
#   infra/bench.sh sweep    3. the retention sweep on 100,000 items with 1% due: items read per item deleted,
#                              AWS requests, wall time, and a crash-and-resume run (tests/benches/sweep.rs;
#                              about 15 minutes, most of it the emulator's own index scans)
# AWS requests per Stripe delivery are counted by the integration tests (1 for a new event, 1 for a
# duplicate), since they are a property to keep, not a speed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rust
ensure_venv
target="${CARGO_TARGET_DIR:-$ROOT/target}"

if [[ "${1:-}" == "fuzz" ]]; then
  # No emulator needed: every target runs over in-memory fakes. NEX_FUZZ_INPUTS per target.
  NEX_FUZZ_INPUTS="${NEX_FUZZ_INPUTS:-100000}" cargo test --profile fuzz --manifest-path "$ROOT/Cargo.toml" -p tests --test fuzz \
    -- --nocapture --test-threads 2 2>&1 | grep -E "^fuzz |test result"
  exit 0
fi

if [[ "${1:-}" == "forwarding" ]]; then
  cargo bench --manifest-path "$ROOT/Cargo.toml" -p shared --bench webhook_sign -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | grep -E "^webhook_sign/|time:|thrpt:" || true
fi

if [[ "${1:-}" == "optin" || "${1:-}" == "sweep" || "${1:-}" == "orders" || "${1:-}" == "forwarding" || "${1:-}" == "insights" || "${1:-}" == "soak" ]]; then
  bench=$([[ "$1" == "optin" ]] && echo optin_load || echo "$1")
  trap stop_moto EXIT
  start_moto "$(free_port)"
  provision "$STATE/bench-manifest.json" >/dev/null
  # The orders bench is I/O against the emulator and stand-ins: built without LTO (minutes less to build).
  profile=$([[ "$bench" == "orders" || "$bench" == "forwarding" || "$bench" == "insights" || "$bench" == "soak" ]] && echo "--profile fuzz" || echo "")
  NEX_STACK_MANIFEST="$STATE/bench-manifest.json" cargo bench $profile --manifest-path "$ROOT/Cargo.toml" -p tests --bench "$bench" \
    2>&1 | grep -v '^{'
  exit 0
fi

log "criterion: webhook verify + parse (Stripe 3 KB event, WhatsApp 10-message batch)"
cargo bench --manifest-path "$ROOT/Cargo.toml" -p shared --bench stripe_verify --bench whatsapp_verify -- --warm-up-time 1 --measurement-time 3 2>&1 \
  | grep -E "^(stripe|whatsapp)_webhook/|time:" || true

log "release build of the functions"
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p stripe-webhook -p payments-worker -p whatsapp-webhook \
  -p messaging-worker -p notifications-sender -p merchant-api -p retention-sweep -p data-requests-worker -p audit-appender \
  -p marketplace-scheduler -p marketplace-poller -p ebay-account-deletion -p webhook-dispatcher -p webhook-sender -p webhook-scheduler -p insights-scheduler -p insights-puller

trap stop_moto EXIT
start_moto "$(free_port)"
provision "$STATE/bench-manifest.json" >/dev/null
"$VENV/bin/python" "$ROOT/infra/bench/coldstart.py" --manifest "$STATE/bench-manifest.json" --target-dir "$target" "$@"
