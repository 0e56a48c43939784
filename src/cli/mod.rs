//! The command line: argument definitions and the offline commands.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::decision::{self, Context};
use crate::gate::{self, Prepared};
use crate::keys;
use crate::ledger::{Identity, Ledger};
use crate::token::{self, License};

mod country;
mod ledger;
mod officer;
mod simulate;

/// permitgate: customs-checkpoint agent for single-use export licenses.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make an Ed25519 key pair: NAME.key.pem (PKCS#8) and NAME.pub.pem (SPKI).
    Keygen {
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// Base name of the files.
        #[arg(long)]
        name: String,
    },
    /// Issue a license token from a JSON claims file; prints the PG1: text (or writes `--out`).
    Issue {
        /// Issuer private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// Key id to put in the protected header.
        #[arg(long)]
        kid: String,
        /// Claims file (JSON, see the README); `-` for standard input.
        #[arg(long)]
        claims: PathBuf,
        /// Write the raw COSE bytes to this file instead of printing the PG1: text.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also draw the token as a QR code: a PNG file, or `-` for the terminal (on standard error).
        #[arg(long)]
        qr: Option<PathBuf>,
    },
    /// Dry run: decide without consuming anything; prints the verdict JSON.
    Verify {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// Token file (PG1: text or COSE bytes); `-` for standard input.
        #[arg(long)]
        token: PathBuf,
        /// Declaration to check the token against; its own license field is replaced.
        #[arg(long)]
        declaration: Option<PathBuf>,
    },
    /// The gate decision by hand: decides, consumes, records, prints the verdict.
    Decide {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// Declaration file (JSON or CBOR); `-` for standard input.
        #[arg(long)]
        declaration: PathBuf,
    },
    /// The daemon: declarations in over MQTT, verdicts and alerts out.
    Run {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// Log format: human-readable text, or one JSON object per line.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// The hub: stores every checkpoint's consumption records and redistributes them.
    Hub {
        /// Hub config file.
        #[arg(long)]
        config: PathBuf,
        /// Log format: human-readable text, or one JSON object per line.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// End-to-end benchmark against a real mosquitto and a real daemon; prints its figures.
    Bench(crate::bench::BenchOptions),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff), generated from these definitions; or write them all.
    Man {
        /// The subcommand whose page to print (`permitgate man policy sign`); none: the top page.
        command: Vec<String>,
        /// Write every page (permitgate.1, permitgate-run.1, …) into this directory instead.
        #[arg(long, conflicts_with = "command")]
        out_dir: Option<PathBuf>,
    },
    /// The authority's signed policy bundles.
    Policy {
        /// What to do.
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// The local daemon's state: its ledger, and `/healthz` when `[http]` is set.
    /// Exit status 0 when ready, 1 otherwise.
    Status {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The clock, as officers vouch for it.
    Clock {
        /// What to do.
        #[command(subcommand)]
        action: ClockAction,
    },
    /// Evidence of a license's use, for investigators and courts.
    Evidence {
        /// What to do.
        #[command(subcommand)]
        action: EvidenceAction,
    },
    /// Try it out: a whole country on this machine, and declarations sent to its posts.
    Dev {
        /// What to do.
        #[command(subcommand)]
        action: country::DevAction,
    },
    /// Shipments on hold: list them, record what an inspection found.
    Hold {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: officer::HoldCommand,
    },
    /// The officers' desk on the console: make a password hash for `[[desk.officers]]`.
    Desk {
        /// What to do.
        #[command(subcommand)]
        action: officer::DeskCommand,
    },
    /// Alerts at this post: list, acknowledge, assign, close.
    Alert {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: officer::AlertCommand,
    },
    /// Inspect the ledger.
    Ledger {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        action: LedgerAction,
    },
}

/// `permitgate clock` actions.
#[derive(Debug, Subcommand)]
pub enum ClockAction {
    /// Record, as a leaf of the signed log, that an officer checked the
    /// clock is right: decisions dated ahead by a clock that was wrong no
    /// longer hold controlled shipments. (A post that can reach the hub
    /// needs none: the hub's signed time vouches for its clock.)
    Confirm {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// The officer's id.
        #[arg(long)]
        officer: String,
        /// What was checked, in words.
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// `permitgate evidence` actions.
#[derive(Debug, Subcommand)]
pub enum EvidenceAction {
    /// Write a self-contained bundle proving every use of a license this ledger knows.
    Export {
        /// Agent config file.
        #[arg(long)]
        config: PathBuf,
        /// The license.
        license_id: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// The authority's signed policy bundle to include (default: the newest in the ledger).
        #[arg(long)]
        policy_bundle: Option<PathBuf>,
    },
    /// Check a bundle offline with the authority's root key, and say what it proves.
    /// Exit 0 when it verifies, 1 when it does not.
    Verify {
        /// The bundle.
        file: PathBuf,
        /// The authority's root public key (SPKI PEM).
        #[arg(long)]
        policy_root_key: PathBuf,
    },
}

/// `permitgate policy` actions.
#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Sign a policy file into a bundle (COSE_Sign1 over CBOR); writes the bytes.
    Sign {
        /// The authority's root private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// The policy file (TOML); issuer key files are inlined.
        #[arg(long = "in")]
        input: PathBuf,
        /// Key id in the bundle's header.
        #[arg(long, default_value = crate::bundle::DEFAULT_KID)]
        kid: String,
        /// Where to write the bundle; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reads a denied-party list (OpenSanctions' FollowTheMoney JSON lines
    /// or simple CSV) and prints `[[denied_parties]]` tables to append to the policy file.
    ImportDenied {
        /// The list file.
        file: PathBuf,
        /// Its format.
        #[arg(long, value_enum)]
        format: ListFormat,
        /// What the entries' `source` says (default: each entity's datasets).
        #[arg(long)]
        source: Option<String>,
    },
}

/// Denied-party list formats `policy import-denied` reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListFormat {
    /// FollowTheMoney entities, one JSON object per line.
    Ftm,
    /// OpenSanctions' simple CSV.
    Csv,
}

/// `permitgate ledger` actions.
#[derive(Debug, Subcommand)]
pub enum LedgerAction {
    /// Everything about one license.
    Show {
        /// The license id.
        license_id: String,
    },
    /// Verdicts, oldest first: all, or for one party and a time range.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only declarations whose exporter or end user has this id.
        #[arg(long)]
        party: Option<String>,
        #[command(flatten)]
        range: TimeRange,
    },
    /// Alerts raised here, oldest first, in a time range.
    Alerts {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        #[command(flatten)]
        range: TimeRange,
    },
    /// Check the ledger: every leaf of its log, its tables against the
    /// leaves, and the log against its own signed heads, the heads given
    /// with `--against`, and the head the hub acknowledged (when `[uplink]`
    /// is set and the hub answers). Exit 0 intact, 1 not intact, 2 bad input.
    Check {
        /// A signed head of this checkpoint's log, exported earlier (`ledger head`); repeatable.
        #[arg(long)]
        against: Vec<PathBuf>,
        /// Do not ask the hub for the head it holds.
        #[arg(long)]
        offline: bool,
        /// How long to wait for the hub's answer, seconds.
        #[arg(long, default_value_t = 5)]
        hub_wait_secs: u64,
    },
    /// Print the newest signed tree head of this checkpoint's log (C2SP signed note).
    Head,
}

pub use crate::logging::LogFormat;

/// A time range for the investigators' queries (UTC).
#[derive(Debug, Clone, clap::Args)]
pub struct TimeRange {
    /// From this time on (RFC 3339, or a date: 2026-11-01).
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Before this time (RFC 3339, or a date: the day before it is the last).
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
}

impl TimeRange {
    fn bounds(&self) -> (i64, i64) {
        (
            self.since.unwrap_or(i64::MIN),
            self.until.unwrap_or(i64::MAX),
        )
    }
}

fn parse_time(s: &str) -> std::result::Result<i64, String> {
    crate::clock::parse_rfc3339(s)
        .or_else(|_| crate::clock::parse_rfc3339(&format!("{s}T00:00:00Z")))
        .map_err(|_| format!("`{s}`: give RFC 3339 (2026-11-01T08:00:00Z) or a date (2026-11-01)"))
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON verdict per line.
    Jsonl,
    /// CSV with one row per verdict.
    Csv,
}

/// How a command ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 1: a verdict other than cleared/not_required, or a failed check.
    Refused,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Keygen { out, name } => {
            let key = keys::generate();
            let (private, public) = keys::write_keypair(&out, &name, &key)?;
            println!("{}\n{}", private.display(), public.display());
            Ok(Outcome::Ok)
        }
        Command::Issue {
            key,
            kid,
            claims,
            out,
            qr,
        } => {
            let key = keys::load_signing_key(&key)?;
            let text = String::from_utf8(read_input(&claims)?)
                .map_err(|_| anyhow!("{}: not UTF-8 text", claims.display()))?;
            let license = License::from_claims_json(&text)
                .map_err(|e| anyhow!("{}: {e}", claims.display()))?;
            let cose = token::issue(&license, &kid, &key);
            let text = token::text::encode(&cose);
            match qr {
                Some(path) if path == Path::new("-") => {
                    eprintln!("{}", crate::qr::terminal(&text)?)
                }
                Some(path) => std::fs::write(&path, crate::qr::png(&text, 6)?)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {}
            }
            match out {
                Some(out) => std::fs::write(&out, &cose)
                    .with_context(|| format!("writing {}", out.display()))?,
                None => println!("{text}"),
            }
            Ok(Outcome::Ok)
        }
        Command::Verify {
            config,
            token: token_file,
            declaration,
        } => {
            let cfg = Config::load(&config)?;
            let now = SystemClock.now();
            let token_bytes = read_input(&token_file)?;
            let ledger = Ledger::open_read_only(&cfg.ledger)?;
            let verdict = match declaration {
                Some(decl_file) => {
                    let mut payload: serde_json::Value = parse_declaration_file(&decl_file)?;
                    let text = String::from_utf8(token_bytes.clone())
                        .ok()
                        .filter(|t| t.trim_start().starts_with("PG1:"));
                    payload["license"] = match text {
                        Some(t) => serde_json::Value::String(t.trim().to_owned()),
                        None => serde_json::Value::String(token::text::encode(&token_bytes)),
                    };
                    let bytes = serde_json::to_vec(&payload)?;
                    let prepared = gate::prepare(&bytes, &cfg.policy, cfg.max_declaration_bytes);
                    gate::dry_run(
                        ledger.as_ref(),
                        &prepared,
                        &cfg.policy,
                        &cfg.checkpoint,
                        now,
                    )?
                }
                None => {
                    let opened = token::open(&token_bytes, |k| cfg.policy.issuer_key(k));
                    let facts = match (&ledger, &opened) {
                        (Some(l), Ok(t)) => l.facts("", Some(&t.license.license_id))?,
                        _ => Default::default(),
                    };
                    let ctx = Context {
                        checkpoint: &cfg.checkpoint,
                        now,
                        clock: crate::clock_trust::ClockStatus::Unknown,
                    };
                    let v = decision::assess_token(&opened, &cfg.policy, &facts, &ctx);
                    let mut json = serde_json::to_value(&v)?;
                    if let Ok(t) = &opened {
                        json["license"] = serde_json::to_value(&t.license)?;
                        json["kid"] = t.kid.clone().into();
                    }
                    println!("{}", serde_json::to_string_pretty(&json)?);
                    return Ok(if v.verdict.passes() {
                        Outcome::Ok
                    } else {
                        Outcome::Refused
                    });
                }
            };
            println!("{}", serde_json::to_string_pretty(&verdict)?);
            Ok(if verdict.verdict.passes() {
                Outcome::Ok
            } else {
                Outcome::Refused
            })
        }
        Command::Decide {
            config,
            declaration,
        } => {
            let cfg = Config::load(&config)?;
            let payload = read_input(&declaration)?;
            let (key, created) = keys::load_or_create_signing_key(&cfg.checkpoint_key)?;
            if created {
                eprintln!("created checkpoint key {}", cfg.checkpoint_key.display());
            }
            let identity = Identity {
                checkpoint: cfg.checkpoint.clone(),
                key,
            };
            let prepared = gate::prepare(&payload, &cfg.policy, cfg.max_declaration_bytes);
            let mut ledger = Ledger::open(&cfg.ledger, &cfg.checkpoint)?;
            ledger.upgrade_log(&identity.key, SystemClock.now())?;
            let mut own_keys = cfg.policy.registry.all_checkpoint_keys(&cfg.checkpoint);
            own_keys.push(identity.key.verifying_key());
            if let Err(why) = ledger.check_own_head(&own_keys) {
                bail!(
                    "ledger {} contradicts its own last signed head ({why}); examine it with `permitgate ledger check`",
                    cfg.ledger.display()
                );
            }
            let mut batch = ledger.begin(&identity)?;
            let outcome = gate::decide_and_record(
                &mut batch,
                &prepared,
                &cfg.policy,
                &identity,
                SystemClock.now(),
            )?;
            batch.commit()?;
            if let Some(alert) = &outcome.alert {
                eprintln!("ALERT: {}", serde_json::to_string(alert)?);
            }
            if outcome.repeated {
                eprintln!("already decided: this is the stored verdict; nothing was consumed");
            }
            if matches!(prepared, Prepared::Malformed { .. }) {
                eprintln!("the declaration could not be read; see the verdict's reasons");
            }
            println!("{}", serde_json::to_string_pretty(&outcome.verdict)?);
            Ok(if outcome.verdict.verdict.passes() {
                Outcome::Ok
            } else {
                Outcome::Refused
            })
        }
        Command::Run { config, log_format } => {
            let cfg = Config::load(&config)?;
            crate::logging::init(log_format, &cfg.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name(crate::daemon::RUNTIME_THREAD)
                .build()
                .context("starting the async runtime")?;
            // Design: spawned, not run on this thread: the connection task
            // then shares a worker with the MQTT session it trades every
            // message with, instead of waking this thread and being woken
            // by a worker for each declaration (fewer thread switches).
            rt.block_on(async {
                tokio::spawn(crate::daemon::run(cfg, shutdown_signal()))
                    .await
                    .context("the daemon's task ended abnormally")?
                    .map_err(anyhow::Error::from)
            })?;
            Ok(Outcome::Ok)
        }
        Command::Hub { config, log_format } => {
            crate::logging::init(log_format, crate::config::DEFAULT_LOG_LEVEL);
            let cfg = crate::hub::HubConfig::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async { crate::hub::run(cfg, shutdown_signal()).await })?;
            Ok(Outcome::Ok)
        }
        Command::Bench(mut opts) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            match opts.target.take() {
                Some(crate::bench::BenchTarget::Hub(hub)) => {
                    rt.block_on(crate::bench_hub::run(hub))?;
                }
                None => {
                    rt.block_on(crate::bench::run(opts))?;
                }
            }
            Ok(Outcome::Ok)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "permitgate",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Ok)
        }
        Command::Dev { action } => country::run(action),
        Command::Hold { config, action } => officer::hold(config, action),
        Command::Alert { config, action } => officer::alert(config, action),
        Command::Desk { action } => officer::desk(action),
        Command::Man { command, out_dir } => man_pages(&command, out_dir.as_deref()),
        Command::Policy {
            action:
                PolicyAction::Sign {
                    key,
                    input,
                    kid,
                    out,
                },
        } => {
            let key = keys::load_signing_key(&key)?;
            let bundle = crate::bundle::sign(&input, &key, &kid)?;
            match out {
                Some(path) => std::fs::write(&path, &bundle)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(&bundle)?,
            }
            Ok(Outcome::Ok)
        }
        Command::Policy {
            action:
                PolicyAction::ImportDenied {
                    file,
                    format,
                    source,
                },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let format = match format {
                ListFormat::Ftm => crate::screening::import::Format::FtmJsonLines,
                ListFormat::Csv => crate::screening::import::Format::SimpleCsv,
            };
            let entries = crate::screening::import::read(&text, format, source.as_deref())
                .with_context(|| format!("{}", file.display()))?;
            eprintln!("{} parties read from {}", entries.len(), file.display());
            print!("{}", crate::screening::import::to_toml(&entries));
            Ok(Outcome::Ok)
        }
        Command::Status { config } => status(&Config::load(&config)?),
        Command::Evidence { action } => evidence(action),
        Command::Clock {
            action:
                ClockAction::Confirm {
                    config,
                    officer,
                    note,
                },
        } => {
            let cfg = Config::load(&config)?;
            if officer.trim().is_empty() {
                bail!("--officer must name the officer who checked the clock");
            }
            let (key, _) = keys::load_or_create_signing_key(&cfg.checkpoint_key)?;
            let identity = Identity {
                checkpoint: cfg.checkpoint.clone(),
                key,
            };
            let mut ledger = Ledger::open(&cfg.ledger, &cfg.checkpoint)?;
            let now = SystemClock.now();
            let before = ledger.confirm_clock(&identity, &officer, &note, now)?;
            println!(
                "clock confirmed at {} by {officer}; recorded in the signed log{}",
                crate::clock::to_rfc3339(now),
                before
                    .filter(|b| *b > now)
                    .map(|b| format!(
                        " (the ledger's newest decision, dated {}, no longer holds clearances)",
                        crate::clock::to_rfc3339(b)
                    ))
                    .unwrap_or_default()
            );
            Ok(Outcome::Ok)
        }
        Command::Ledger { config, action } => {
            let cfg = Config::load(&config)?;
            let ledger = Ledger::open_read_only(&cfg.ledger)?
                .ok_or_else(|| anyhow!("ledger {} does not exist yet", cfg.ledger.display()))?;
            match action {
                LedgerAction::Head => ledger::head(&ledger),
                LedgerAction::Check {
                    against,
                    offline,
                    hub_wait_secs,
                } => ledger::check(
                    &cfg,
                    &ledger,
                    &against,
                    (!offline).then(|| std::time::Duration::from_secs(hub_wait_secs)),
                ),
                other => ledger::ledger_action(&ledger, other),
            }
        }
    }
}

/// `permitgate evidence export | verify`.
fn evidence(action: EvidenceAction) -> Result<Outcome> {
    match action {
        EvidenceAction::Export {
            config,
            license_id,
            out,
            policy_bundle,
        } => {
            let cfg = Config::load(&config)?;
            let key = keys::load_signing_key(&cfg.checkpoint_key)?;
            let ledger = Ledger::open_read_only(&cfg.ledger)?
                .ok_or_else(|| anyhow!("ledger {} does not exist yet", cfg.ledger.display()))?;
            let policy_bundle = match policy_bundle {
                Some(f) => std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?,
                None => ledger.newest_policy_bundle()?.ok_or_else(|| {
                    anyhow!(
                        "the ledger holds no signed policy bundle, and evidence needs the authority's signed registry: pass --policy-bundle FILE"
                    )
                })?,
            };
            let records = ledger.evidence_records(&license_id)?;
            if records.is_empty() {
                bail!("the ledger knows no use of license {license_id}");
            }
            let bundle = crate::evidence::Bundle {
                license_id,
                exported_by: cfg.checkpoint.clone(),
                exported_at: SystemClock.now(),
                policy_bundle,
                records,
            };
            std::fs::write(&out, bundle.sign(&key))
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {} ({} record(s)); check it with `permitgate evidence verify {} --policy-root-key ROOT.pub.pem`",
                out.display(),
                bundle.records.len(),
                out.display()
            );
            Ok(Outcome::Ok)
        }
        EvidenceAction::Verify {
            file,
            policy_root_key,
        } => {
            let root = keys::load_verifying_key(&policy_root_key)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match crate::evidence::verify(&bytes, &root) {
                Ok(p) => {
                    print!("{}", p.describe());
                    Ok(Outcome::Ok)
                }
                Err(e) => {
                    eprintln!("DOES NOT VERIFY: {e}");
                    Ok(Outcome::Refused)
                }
            }
        }
    }
}

/// `permitgate man`: one page to standard output, or every page into a directory.
fn man_pages(path: &[String], out_dir: Option<&std::path::Path>) -> Result<Outcome> {
    use clap::CommandFactory;
    // Built, so that subcommands carry their page names (permitgate-policy-sign).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        return Ok(Outcome::Ok);
    }
    let mut page = &cmd;
    for name in path {
        page = page.find_subcommand(name).ok_or_else(|| {
            anyhow!(
                "`{name}` is not a subcommand of `{}`; try `{} --help`",
                page.get_display_name().unwrap_or(page.get_name()),
                page.get_display_name()
                    .unwrap_or(page.get_name())
                    .replace('-', " ")
            )
        })?;
    }
    clap_mangen::Man::new(page.clone()).render(&mut std::io::stdout())?;
    Ok(Outcome::Ok)
}

/// `permitgate status`: what the ledger holds and what the daemon says of itself.
fn status(cfg: &Config) -> Result<Outcome> {
    let ledger = Ledger::open_read_only(&cfg.ledger)?
        .ok_or_else(|| anyhow!("ledger {} does not exist yet", cfg.ledger.display()))?;
    let crate::ledger::LedgerCounts {
        verdicts,
        consumed,
        outbox,
    } = ledger.counts()?;
    let last = ledger.recent_verdicts(1)?.into_iter().next();
    let oldest = ledger.oldest_unsynced()?;
    println!(
        "checkpoint {}  ledger {}",
        cfg.checkpoint,
        cfg.ledger.display()
    );
    let oldest = oldest
        .map(|t| format!(" (oldest {})", crate::clock::to_rfc3339(t)))
        .unwrap_or_default();
    if cfg.uplink.is_some() {
        println!(
            "  verdicts {verdicts}, licenses consumed {consumed}, waiting for the hub {outbox}{oldest}"
        );
    } else {
        println!(
            "  verdicts {verdicts}, licenses consumed {consumed}, kept here {outbox}{oldest} (stand-alone post: no hub configured)"
        );
    }
    let (unreadable, dropped) = ledger.unreadable_counts()?;
    if unreadable > 0 {
        println!(
            "  unreadable payloads {unreadable} (answered `malformed`; the newest {} kept, {dropped} dropped)",
            crate::ledger::UNREADABLE_KEPT
        );
    }
    if let Some(v) = last {
        println!(
            "  last verdict {} {} at {}",
            v.declaration_id.as_deref().unwrap_or("-"),
            v.verdict.as_str(),
            v.decided_at
        );
    }
    let Some(http) = &cfg.http else {
        println!("  daemon: no [http] listener configured, so no health to ask");
        return Ok(Outcome::Ok);
    };
    let url = format!("http://{}/healthz", http.listen);
    let answer = match ureq::get(&url)
        .timeout(std::time::Duration::from_secs(3))
        .call()
    {
        Ok(r) => r.into_string().ok(),
        Err(ureq::Error::Status(_, r)) => r.into_string().ok(),
        Err(e) => {
            println!("  daemon: not answering at {url} ({e})");
            return Ok(Outcome::Refused);
        }
    };
    let h: serde_json::Value = answer
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_default();
    let state = h["state"].as_str().unwrap_or("unknown");
    println!("  daemon: {state}");
    for r in h["reasons"].as_array().into_iter().flatten() {
        println!("    - {}", r.as_str().unwrap_or_default());
    }
    Ok(if state == "ready" {
        Outcome::Ok
    } else {
        Outcome::Refused
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn parse_declaration_file(path: &Path) -> Result<serde_json::Value> {
    let bytes = read_input(path)?;
    let v: serde_json::Value = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?
    } else {
        use crate::codec::Value;
        // JSON has no byte strings: a raw COSE license becomes its PG1: text.
        let mut v =
            crate::codec::decode_value(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if let Value::Map(entries) = &mut v {
            for (k, val) in entries.iter_mut() {
                if matches!(k, Value::Text(t) if t == "license")
                    && let Value::Bytes(cose) = val
                {
                    *val = Value::Text(crate::token::text::encode(cose));
                }
            }
        }
        crate::codec::from_slice(&crate::codec::encode_value(&v))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?
    };
    if !v.is_object() {
        bail!("{}: a declaration is a JSON object", path.display());
    }
    Ok(v)
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called (inside the runtime), not when the future is first polled, so a
/// signal during start-up is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let (Some(mut term), Some(mut int)) = (term, int) else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
