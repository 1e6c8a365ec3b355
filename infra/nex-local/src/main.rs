//! `nex-local`: runs the whole suite on this machine against the AWS emulator (see
//! [`nex_local::runner`] for what it supplies that moto does not).

#![recursion_limit = "256"]

use std::time::Duration;

use nex_local::faults::Plan;
use nex_local::manifest::Manifest;
use nex_local::runner::{self, Cuts, Options};
use tracing::info;

const USAGE: &str = "usage: nex-local --manifest FILE [--port 3000] [--reap-every-secs 30] [--ttl-lag-secs 60]
                 [--faults SHARE] [--fault-ops OP,OP] [--cut-share SHARE] [--seed N] [--visibility-secs N] [--pollers N]
  --faults 0.1        fail 10% of the functions' AWS calls as AWS does (500, throttling, reset, slow, lost answer)
  --fault-ops OPS     only these operations or services (DynamoDB_20120810.PutItem, AmazonSQS, s3, ...)
  --cut-share 0.01    cut 1% of invocations off mid-way, as a Lambda timeout does
  --seed N            the seed of both (runs repeat)
  --visibility-secs N the pollers' visibility timeout (redelivery after a failure or cut-off)
  --pollers N         concurrent pollers (invocations) per event source mapping (2)";

fn options() -> Result<(String, Options), String> {
    let mut o = Options::default();
    let (mut manifest, mut share, mut cut, mut seed, mut ops) = (String::new(), 0.0, 0.0, 20261201u64, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--manifest" => manifest = val("--manifest")?,
            "--port" => o.port = val("--port")?.parse().map_err(|_| "--port takes a number")?,
            "--reap-every-secs" => {
                o.reap_every =
                    Duration::from_secs(val("--reap-every-secs")?.parse().map_err(|_| "bad --reap-every-secs")?)
            }
            "--ttl-lag-secs" => o.ttl_lag = val("--ttl-lag-secs")?.parse().map_err(|_| "bad --ttl-lag-secs")?,
            "--faults" => share = val("--faults")?.parse().map_err(|_| "--faults takes a share, 0 to 1")?,
            "--fault-ops" => ops = val("--fault-ops")?.split(',').map(str::to_owned).collect(),
            "--cut-share" => cut = val("--cut-share")?.parse().map_err(|_| "--cut-share takes a share, 0 to 1")?,
            "--seed" => seed = val("--seed")?.parse().map_err(|_| "--seed takes a number")?,
            "--visibility-secs" => {
                o.visibility_timeout = Some(val("--visibility-secs")?.parse().map_err(|_| "bad --visibility-secs")?)
            }
            "--pollers" => o.pollers = val("--pollers")?.parse().map_err(|_| "--pollers takes a number")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if manifest.is_empty() {
        return Err(format!("--manifest is required\n{USAGE}"));
    }
    if !(0.0..=1.0).contains(&share) || !(0.0..=1.0).contains(&cut) {
        return Err("a share is between 0 and 1".into());
    }
    if share > 0.0 {
        o.faults = Some(Plan { operations: ops, ..Plan::new(share, seed) });
    }
    if cut > 0.0 {
        o.cuts = Some(Cuts { share: cut, seed: seed ^ 0x5eed });
    }
    Ok((manifest, o))
}

#[tokio::main]
async fn main() {
    nex_shared::telemetry::init();
    if let Err(e) = run().await {
        eprintln!("nex-local: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let (path, opts) = options()?;
    let manifest = Manifest::load(&path)?;
    let sdk = nex_shared::adapters::aws::load_config().await;
    let running = runner::start(manifest, &sdk, opts).await?;
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    let t = running.invocations.total();
    info!(invoked = t.invoked, cut = t.cut, failed = t.failed, faults = running.faults.injected_total(), "stopping");
    Ok(())
}
