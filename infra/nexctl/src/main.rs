//! `nexctl`: the operators' command line. Tables for people, `--json` for scripts; errors on stderr with a
//! non-zero exit (1: the command failed, 2: bad usage, 3: the audit chain does not verify).
//!
//! Against the local stack: `nexctl --manifest infra/.local/manifest.json ...` (what `infra/dev.sh` writes).
//! Against AWS: the stack's outputs in the environment (see `Stack::from_env`) and the usual AWS credentials.

#![recursion_limit = "256"]

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use nex_shared::usecases::data_requests::{Intake, Outcome};
use nexctl::{Bar, Ops, OpsError, Stack};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "nexctl",
    version,
    about = "Operate the Nex suite: retention sweeps, data-subject requests, the audit log, dead-letter queues."
)]
struct Cli {
    /// A local stack manifest (from infra/local/provision.py). Without it, the stack's outputs are read
    /// from the environment.
    #[arg(long, global = true, env = "NEX_MANIFEST")]
    manifest: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The retention sweep.
    #[command(subcommand)]
    Sweep(SweepCmd),
    /// Data-subject requests.
    #[command(subcommand)]
    Dsr(DsrCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Merchants' contracts.
    #[command(subcommand)]
    Merchant(MerchantCmd),
    /// Marketplace connections: their health, pause and resume.
    #[command(subcommand)]
    Connections(ConnectionsCmd),
    /// Meta ad insights: ad accounts, campaign mappings.
    #[command(subcommand)]
    Insights(InsightsCmd),
    /// Merchants' webhook endpoints: their health, recent attempts and open deliveries.
    #[command(subcommand)]
    Endpoints(EndpointsCmd),
    /// The suite's functions (from the registry) and whether this stack's variables configure each.
    Functions,
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Runs the sweep now, from its checkpoint (with a progress bar).
    Run {
        /// Report what would be done without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Stop and save the position after this many minutes.
        #[arg(long, default_value_t = 60)]
        minutes: i64,
    },
    /// Where the sweep stands (its checkpoint).
    Status,
}

#[derive(Subcommand)]
enum DsrCmd {
    /// Opens a request for a person and queues it for the data-requests worker.
    Open {
        /// access, export, deletion or correction
        #[arg(long)]
        kind: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        bsuid: Option<String>,
        /// <marketplace>:<buyer id>
        #[arg(long)]
        buyer: Option<String>,
        /// The merchant the person is a customer of, if any.
        #[arg(long)]
        merchant: Option<String>,
        /// A ticket reference: opening the same reference twice opens one request.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Open requests and their deadlines.
    List,
    /// One request, its outcome and (for an export) a 15-minute link.
    Show { id: String },
    /// Closes a request an operator answered (e.g. a correction): it leaves the list and the alarm.
    Close {
        id: String,
        /// A short outcome code: corrected, declined, no_data, ...
        #[arg(long)]
        outcome: String,
    },
    /// Processes a request now, as the worker would.
    Run {
        id: String,
        /// Run it even if it was completed.
        #[arg(long)]
        again: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Entries after a number.
    Show {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Checks every link of the chain and its head.
    Verify,
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Every dead-letter queue and its depth.
    List,
    /// Looks at dead letters without taking them (bodies only with --body: they may hold personal data).
    Show {
        /// The source queue or the DLQ (logical or queue name).
        queue: String,
        #[arg(long, default_value_t = 10)]
        max: usize,
        #[arg(long)]
        body: bool,
    },
    /// Moves dead letters back to their source queue.
    Redrive {
        queue: String,
        #[arg(long)]
        max: Option<usize>,
    },
}

#[derive(Subcommand)]
enum ConnectionsCmd {
    /// Every connection (or one merchant's) with its health.
    List {
        #[arg(long)]
        merchant: Option<String>,
    },
    /// Stops polling a connection until it is resumed.
    Pause { id: String },
    /// Polls a paused connection again (a backoff in force still applies).
    Resume { id: String },
}

#[derive(Subcommand)]
enum InsightsCmd {
    /// The ad accounts pulled, with their state (active, token_error), throttle and last outcome.
    Accounts,
    /// Adds an ad account (`act_<id>` or `<id>`).
    AddAccount { id: String },
    /// Pulls a stopped account again (after its token was replaced).
    Resume { id: String },
    /// Maps a campaign to the retailer it was created for (its rows and rollups follow).
    Map {
        campaign: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        retailer: String,
    },
    /// Every campaign mapping, and the campaigns seen without one.
    Campaigns,
}

#[derive(Subcommand)]
enum EndpointsCmd {
    /// A merchant's endpoints and their health.
    List {
        #[arg(long)]
        merchant: String,
    },
    /// An endpoint's recent attempts and its pending or failed deliveries.
    Attempts {
        #[arg(long)]
        merchant: String,
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum MerchantCmd {
    /// Records that a merchant's contract ended: the next sweep deletes its order metadata.
    Terminate {
        merchant: String,
        /// When it ended (RFC 3339); now by default.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn short(h: &str) -> String {
    h.chars().take(12).collect()
}

fn report_table(r: &nex_shared::usecases::sweep::Report) -> String {
    let mut rows: Vec<Vec<String>> = r
        .actions
        .iter()
        .flat_map(|(class, m)| m.iter().map(move |(a, n)| vec![class.clone(), a.clone(), n.to_string()]))
        .collect();
    if rows.is_empty() {
        rows.push(vec!["(nothing due)".into(), String::new(), "0".into()]);
    }
    let head = table(&["data class", "action", "items"], rows);
    let secs = |s: Option<i64>| s.map_or("-".into(), |s| format!("{:.1} h", s as f64 / 3600.0));
    format!(
        "{head}\n{} days {} .. {}, complete: {}, {} buckets, {} items read, {} changed\n\
         oldest overdue: {}, TTL lag: {}, exports deleted: {}\n\
         data-subject requests open: {}, due within 7 days: {}, overdue: {}",
        if r.dry_run { "DRY RUN:" } else { "swept" },
        r.from_day.map_or("-".into(), |d| d.to_string()),
        r.to_day.map_or("-".into(), |d| d.to_string()),
        r.complete,
        r.buckets_read,
        r.items_read,
        r.items_changed,
        secs(r.oldest_overdue_seconds),
        secs(r.ttl_lag_seconds),
        r.exports_deleted,
        r.requests_open,
        r.requests_due_soon,
        r.requests_overdue,
    )
}

/// Every function of the registry, with its trigger and whether `stack`'s variables configure it.
fn functions(stack: &Stack, json: bool) {
    let env: std::collections::HashMap<String, String> = stack.vars.clone().into_iter().collect();
    let rows: Vec<(String, String, String)> = nex_shared::registry::FUNCTIONS
        .iter()
        .map(|e| {
            let config = e.check(&env).map_or_else(|err| err.to_string(), |()| "ok".to_owned());
            let trigger = serde_json::to_value(e.trigger).ok().and_then(|v| v.as_str().map(str::to_owned));
            (e.name.to_owned(), trigger.unwrap_or_default(), config)
        })
        .collect();
    if json {
        let v: Vec<_> =
            rows.iter().map(|(n, t, c)| serde_json::json!({ "function": n, "trigger": t, "config": c })).collect();
        print_json(&v);
    } else {
        let rows = rows.into_iter().map(|(n, t, c)| vec![n, t, c]).collect();
        println!("{}", table(&["function", "trigger", "configuration"], rows));
    }
}

async fn run(cli: Cli) -> Result<i32, OpsError> {
    let stack = match &cli.manifest {
        Some(m) => Stack::from_manifest(m)?,
        None => Stack::from_env(),
    };
    if let Cmd::Functions = cli.cmd {
        functions(&stack, cli.json);
        return Ok(0);
    }
    let sdk = match &cli.manifest {
        Some(m) => nexctl::manifest_sdk_config(m).await?,
        None => nex_shared::adapters::aws::load_config().await,
    };
    let ops = Ops::new(stack, sdk).await?;
    let json = cli.json;
    match cli.cmd {
        // Answered above: it needs no AWS clients.
        Cmd::Functions => {}
        Cmd::Sweep(SweepCmd::Run { dry_run, minutes }) => {
            let bar = (!json).then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} sweeping {bar:40} {pos}/{len} due buckets {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            let report = ops.sweep(dry_run, chrono::Duration::minutes(minutes), &Bar(bar.clone())).await?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if json {
                print_json(&report);
            } else {
                println!("{}", report_table(&report));
            }
        }
        Cmd::Sweep(SweepCmd::Status) => {
            let status = ops.sweep_status().await?;
            if json {
                print_json(&status);
            } else {
                let cell = |k: &str| match &status[k] {
                    serde_json::Value::Null => "-".to_owned(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let rows = status
                    .as_object()
                    .map(|o| o.keys().map(|k| vec![k.clone(), cell(k)]).collect())
                    .unwrap_or_default();
                println!("{}", table(&["sweep", "position"], rows));
            }
        }
        Cmd::Dsr(DsrCmd::Open { kind, phone, email, bsuid, buyer, merchant, reference }) => {
            let intake = Intake { kind, phone, email, bsuid, marketplace_buyer: buyer };
            let o = ops.open_request(&intake, merchant.as_deref(), reference.as_deref()).await?;
            if json {
                print_json(&serde_json::json!({ "id": o.request.id, "new": o.new, "answer_by": o.request.answer_by }));
            } else {
                println!(
                    "{} request {} ({}), answer by {}; queued for the data-requests worker",
                    if o.new { "opened" } else { "already open:" },
                    o.request.id,
                    o.request.kind,
                    o.request.answer_by.format("%Y-%m-%d")
                );
            }
        }
        Cmd::Dsr(DsrCmd::List) => {
            let open = ops.open_requests().await?;
            if json {
                print_json(&open);
            } else {
                let now = Utc::now();
                let rows = open
                    .iter()
                    .map(|(id, by)| {
                        vec![
                            id.clone(),
                            by.format("%Y-%m-%d %H:%M UTC").to_string(),
                            format!("{} days", (*by - now).num_days()),
                        ]
                    })
                    .collect();
                println!("{}", table(&["open request", "answer by", "left"], rows));
            }
        }
        Cmd::Dsr(DsrCmd::Show { id }) => {
            let v = ops.show_request(&id).await?;
            if json {
                print_json(&v);
            } else {
                let r = &v.record;
                let t = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
                let subjects: Vec<String> = r.request.subjects.iter().map(|s| short(s)).collect();
                println!("request    {}", r.request.id);
                println!("kind       {}", r.request.kind);
                println!("status     {}", r.status);
                println!("source     {}", r.request.source);
                println!("merchant   {}", r.request.merchant.as_deref().unwrap_or("-"));
                println!("subjects   {}", subjects.join(", "));
                println!("received   {}", t(&r.request.received_at));
                println!("answer by  {}", t(&r.request.answer_by));
                println!("completed  {}", r.completed_at.as_ref().map_or("-".into(), t));
                println!("result     {}", r.result.as_deref().unwrap_or("-"));
                if let Some(url) = &v.export_url {
                    println!("export     {url}\n           (link valid 15 minutes)");
                }
            }
        }
        Cmd::Dsr(DsrCmd::Close { id, outcome }) => {
            ops.close_request(&id, &outcome).await?;
            if json {
                print_json(&serde_json::json!({ "id": id, "status": "closed", "outcome": outcome }));
            } else {
                println!("{id}: closed ({outcome})");
            }
        }
        Cmd::Dsr(DsrCmd::Run { id, again }) => {
            let outcome = ops.run_request(&id, again).await?;
            let v = match &outcome {
                Outcome::AlreadyDone => serde_json::json!({ "outcome": "already_done" }),
                Outcome::Exported { key, items } => {
                    serde_json::json!({ "outcome": "exported", "key": key, "items": items })
                }
                Outcome::Erased(r) => serde_json::json!({ "outcome": "erased", "result": r }),
                Outcome::NeedsOperator => serde_json::json!({ "outcome": "needs_operator" }),
            };
            if json {
                print_json(&v);
            } else {
                println!("{id}: {}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
        }
        Cmd::Audit(AuditCmd::Show { after, limit }) => {
            let entries = ops.audit_entries(after, limit).await?;
            if json {
                print_json(&entries);
            } else {
                let rows = entries
                    .iter()
                    .map(|e| {
                        let mut detail = e.detail.clone();
                        if detail.len() > 80 {
                            detail.truncate(77);
                            detail.push_str("...");
                        }
                        vec![
                            e.seq.to_string(),
                            e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            e.actor.clone(),
                            e.action.clone(),
                            e.subject.as_deref().map(short).unwrap_or_default(),
                            detail,
                            short(&e.hash),
                        ]
                    })
                    .collect();
                println!("{}", table(&["#", "at (UTC)", "actor", "action", "subject", "detail", "hash"], rows));
            }
        }
        Cmd::Audit(AuditCmd::Verify) => {
            let v = ops.verify_audit().await?;
            if json {
                print_json(&v);
            } else if let Some((seq, why)) = v.broken {
                println!("audit log BROKEN at entry {seq}: {why} ({} entries read)", v.entries);
            } else {
                println!(
                    "audit log verified: {} entries, {} .. {}, every link and the head hold",
                    v.entries,
                    v.first_seq.map_or("-".into(), |s| s.to_string()),
                    v.last_seq.map_or("-".into(), |s| s.to_string())
                );
            }
            if !v.ok() {
                return Ok(3);
            }
        }
        Cmd::Dlq(DlqCmd::List) => {
            let all = ops.dead_letter_queues().await?;
            if json {
                print_json(&all);
            } else {
                let rows = all.iter().map(|d| vec![d.source.clone(), d.dlq.clone(), d.depth.to_string()]).collect();
                println!("{}", table(&["queue", "dead-letter queue", "messages"], rows));
            }
        }
        Cmd::Dlq(DlqCmd::Show { queue, max, body }) => {
            let letters = ops.inspect_dlq(&queue, max, body).await?;
            if json {
                print_json(&letters);
            } else {
                let rows = letters
                    .iter()
                    .map(|l| {
                        vec![
                            l.message_id.clone(),
                            l.receive_count.to_string(),
                            l.sent_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                            format!("{} v{}", l.kind.clone().unwrap_or("?".into()), l.version.unwrap_or(0)),
                            l.id.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                println!("{}", table(&["message", "receives", "sent", "type", "id"], rows));
                if body {
                    for l in &letters {
                        println!("{}: {}", l.message_id, l.body.clone().unwrap_or_default());
                    }
                }
            }
        }
        Cmd::Dlq(DlqCmd::Redrive { queue, max }) => {
            let moved = ops.redrive(&queue, max).await?;
            if json {
                print_json(&serde_json::json!({ "moved": moved }));
            } else {
                println!("moved {moved} message(s) back to their queue");
            }
        }
        Cmd::Connections(ConnectionsCmd::List { merchant }) => {
            let list = ops.connections_list(merchant.as_deref()).await?;
            let t = |v: Option<DateTime<Utc>>| {
                v.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
            };
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id, "merchant": c.merchant, "marketplace": c.marketplace, "account": c.account,
                            "status": c.status.as_str(), "watermark": c.watermark, "last_success": c.last_success,
                            "last_error": c.last_error, "failures": c.failures, "throttle_until": c.throttle_until,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.clone(),
                            c.merchant.clone(),
                            c.marketplace.to_string(),
                            c.status.as_str().to_owned(),
                            t(c.watermark),
                            t(c.last_success),
                            c.last_error.clone().unwrap_or_else(|| "-".into()),
                            c.failures.to_string(),
                            t(c.throttle_until),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "id",
                            "merchant",
                            "marketplace",
                            "status",
                            "watermark (UTC)",
                            "last success",
                            "last error",
                            "failures",
                            "backoff until"
                        ],
                        rows
                    )
                );
            }
        }
        Cmd::Insights(InsightsCmd::Accounts) => {
            let list = ops.insights_accounts().await?;
            if json {
                print_json(&list);
            } else {
                let t = |v: Option<i64>| {
                    v.and_then(|s| DateTime::from_timestamp(s, 0))
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into())
                };
                let rows = list
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.status.clone(),
                            if a.currency.is_empty() { "-".into() } else { a.currency.clone() },
                            format!(
                                "{} ({:+})",
                                if a.timezone_name.is_empty() { "-" } else { &a.timezone_name },
                                a.offset_hours
                            ),
                            t(a.last_success_at),
                            t(a.throttle_until),
                            a.pending.len().to_string(),
                            a.job.as_ref().map_or_else(|| "-".into(), |j| j.0.clone()),
                            a.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(
                        &[
                            "account",
                            "status",
                            "currency",
                            "time zone",
                            "last success",
                            "throttled until",
                            "ranges left",
                            "report run",
                            "last error"
                        ],
                        rows
                    )
                );
            }
        }
        Cmd::Insights(InsightsCmd::AddAccount { id }) => {
            let added = ops.insights_add_account(&id).await?;
            println!("{}", if added { format!("{id} added") } else { format!("{id} was there already") });
        }
        Cmd::Insights(InsightsCmd::Resume { id }) => {
            let done = ops.insights_resume(&id).await?;
            println!("{}", if done { format!("{id} resumed") } else { format!("{id}: no such account") });
            return Ok(if done { 0 } else { 1 });
        }
        Cmd::Insights(InsightsCmd::Map { campaign, account, retailer }) => {
            let moved = ops.insights_map(&campaign, &account, &retailer).await?;
            println!("{campaign} mapped to {retailer}; {moved} stored row(s) re-attributed");
        }
        Cmd::Insights(InsightsCmd::Campaigns) => {
            let (unmapped, mapped, requests) = ops.insights_campaigns().await?;
            if json {
                print_json(&serde_json::json!({ "mapped": mapped, "unmapped": unmapped, "requested": requests }));
            } else {
                let mut rows: Vec<Vec<String>> = mapped.iter().map(|(c, r)| vec![c.clone(), r.clone()]).collect();
                rows.sort();
                rows.extend(unmapped.iter().map(|(c, a)| vec![c.clone(), format!("(unmapped, account {a})")]));
                rows.extend(requests.iter().filter(|(c, ..)| !mapped.contains_key(c)).map(|(c, a, r, _)| {
                    vec![c.clone(), format!("(requested by {r}, account {a}: nexctl insights map)")]
                }));
                println!("{}", table(&["campaign", "retailer"], rows));
            }
        }
        Cmd::Endpoints(EndpointsCmd::List { merchant }) => {
            let list = ops.endpoints_list(&merchant).await?;
            let t = |v: Option<i64>| {
                v.and_then(|s| DateTime::from_timestamp(s, 0))
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            if json {
                print_json(&list);
            } else {
                let rows = list
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            e.url.clone(),
                            e.event_types.join(","),
                            if e.enabled {
                                "enabled".into()
                            } else {
                                format!("disabled ({})", e.disabled_reason.as_deref().unwrap_or("-"))
                            },
                            t(e.failing_since),
                            t(e.last_success_at),
                            t(e.paused_until),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["id", "url", "events", "status", "failing since", "last success", "paused until"], rows)
                );
            }
        }
        Cmd::Endpoints(EndpointsCmd::Attempts { merchant, id, limit }) => {
            let (attempts, open) = ops.endpoint_activity(&merchant, &id, limit).await?;
            if json {
                print_json(&serde_json::json!({ "attempts": attempts, "open_deliveries": open }));
            } else {
                let rows = attempts
                    .iter()
                    .map(|a| {
                        vec![
                            DateTime::from_timestamp_millis(a.at_ms)
                                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                .unwrap_or_default(),
                            a.event_id.clone(),
                            format!("{}.{}", a.round, a.n),
                            a.status.map_or_else(|| "-".into(), |s| s.to_string()),
                            a.error.clone().unwrap_or_else(|| "-".into()),
                            format!("{} ms", a.latency_ms),
                        ]
                    })
                    .collect();
                println!("{}", table(&["at (UTC)", "event", "round.attempt", "status", "error", "latency"], rows));
                let rows = open
                    .iter()
                    .map(|d| {
                        vec![
                            d.event_id.clone(),
                            d.state.as_str().to_owned(),
                            d.attempts.to_string(),
                            d.last_error.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                println!("{}", table(&["open delivery", "state", "attempts", "last error"], rows));
            }
        }
        Cmd::Connections(ConnectionsCmd::Pause { id }) => {
            let changed = ops.connection_pause(&id, true).await?;
            println!(
                "{}",
                if changed { format!("{id} paused") } else { format!("{id}: no active connection with this id") }
            );
            return Ok(if changed { 0 } else { 1 });
        }
        Cmd::Connections(ConnectionsCmd::Resume { id }) => {
            let changed = ops.connection_pause(&id, false).await?;
            println!(
                "{}",
                if changed { format!("{id} resumed") } else { format!("{id}: no paused connection with this id") }
            );
            return Ok(if changed { 0 } else { 1 });
        }
        Cmd::Merchant(MerchantCmd::Terminate { merchant, at }) => {
            let at = at.unwrap_or_else(Utc::now);
            let new = ops.terminate_merchant(&merchant, at).await?;
            if json {
                print_json(&serde_json::json!({ "merchant": merchant, "ended_at": at, "new": new }));
            } else if new {
                println!("contract of {merchant} ended {at}; the next sweep deletes its order metadata");
            } else {
                println!("contract of {merchant} was already marked as ended");
            }
        }
    }
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("nexctl: {msg}");
            std::process::exit(1);
        }
    }
}
