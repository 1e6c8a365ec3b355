//! The soak benchmark (issue 14): 10,000 Stripe and 10,000 WhatsApp deliveries with 30% duplicates,
//! shuffled, 32 at a time, under 10% injected AWS faults and 1% cut-off invocations, then reconciled;
//! then the retention sweep under faults. Prints the table; asserts nothing.
//!
//!   infra/bench.sh soak                  (a fresh emulator, provisioned from template.yaml)
//!   NEX_SOAK_STRIPE=2000 NEX_SOAK_WHATSAPP=2000 infra/bench.sh soak    a shorter run

use nex_tests::soak::{run, Config};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("NEX_STACK_MANIFEST").is_none() {
        eprintln!("soak bench: NEX_STACK_MANIFEST is not set; run it through infra/bench.sh soak");
        return;
    }
    if std::env::var_os("NEX_SOAK_LOG").is_some() {
        nex_shared::telemetry::init();
    }
    let report = run(&Config::full().from_env()).await;
    report.print();
}
