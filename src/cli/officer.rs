//! `permitgate hold` and `permitgate alert`: an officer's work from the
//! command line, for posts without a browser. They write to the ledger in
//! a transaction of their own; a running daemon publishes what they wrote.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};

use super::Outcome;
use crate::clock::{Clock, SystemClock, to_rfc3339};
use crate::config::Config;
use crate::holds::{self, Request, ResolveError};
use crate::keys;
use crate::ledger::{AlertAction, AlertActionError, Identity, Ledger};
use crate::verdict::HoldOutcome;

/// `permitgate hold` actions.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Shipments on hold, oldest first.
    List,
    /// Records what the inspection of a held shipment found: `release`
    /// consumes its license as a clearance does; `refuse` and `seize` do not.
    Resolve {
        /// The held declaration's id.
        declaration_id: String,
        /// What the officer decided.
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        /// The officer's id, as recorded in the signed log.
        #[arg(long)]
        officer: String,
        /// What was found, in the officer's words.
        #[arg(long)]
        note: String,
    },
}

/// The outcomes of a hold, as typed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutcomeArg {
    /// Let it pass.
    Release,
    /// Turn it back.
    Refuse,
    /// Seize it.
    Seize,
}

/// `permitgate alert` actions.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Alerts not closed (newest first); `--all` for closed ones too.
    List {
        /// Closed alerts too.
        #[arg(long)]
        all: bool,
    },
    /// Says an officer has seen an alert.
    Acknowledge {
        /// The alert's number (from `alert list`).
        alert_id: i64,
        /// The officer's id.
        #[arg(long)]
        officer: String,
        /// A note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Hands an alert to an officer.
    Assign {
        /// The alert's number.
        alert_id: i64,
        /// The officer it goes to.
        #[arg(long)]
        to: String,
        /// The officer assigning it.
        #[arg(long)]
        officer: String,
        /// A note.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Closes an alert, saying what was done.
    Close {
        /// The alert's number.
        alert_id: i64,
        /// The officer's id.
        #[arg(long)]
        officer: String,
        /// What was done.
        #[arg(long)]
        note: String,
    },
}

fn open(config: &std::path::Path) -> Result<(Config, Identity, Ledger)> {
    let cfg = Config::load(config)?;
    let (key, _) = keys::load_or_create_signing_key(&cfg.checkpoint_key)?;
    let identity = Identity {
        checkpoint: cfg.checkpoint.clone(),
        key,
    };
    let ledger = Ledger::open(&cfg.ledger, &cfg.checkpoint)?;
    Ok((cfg, identity, ledger))
}

/// Runs `permitgate hold`.
pub fn hold(config: PathBuf, command: HoldCommand) -> Result<Outcome> {
    let (cfg, identity, mut ledger) = open(&config)?;
    match command {
        HoldCommand::List => {
            let holds = ledger.open_holds(1_000)?;
            if holds.is_empty() {
                println!("no shipment is on hold");
            }
            for v in holds {
                println!(
                    "{}  held {}  license {}  {}",
                    v.declaration_id.as_deref().unwrap_or("-"),
                    v.decided_at,
                    v.license_id.as_deref().unwrap_or("-"),
                    v.reasons
                        .iter()
                        .map(|r| r.detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            Ok(Outcome::Ok)
        }
        HoldCommand::Resolve {
            declaration_id,
            outcome,
            officer,
            note,
        } => {
            let policy = crate::daemon::newest_policy(&cfg, &ledger);
            let request = Request {
                declaration_id,
                outcome: match outcome {
                    OutcomeArg::Release => HoldOutcome::Release,
                    OutcomeArg::Refuse => HoldOutcome::Refuse,
                    OutcomeArg::Seize => HoldOutcome::Seize,
                },
                officer,
                note,
            };
            match holds::apply(&mut ledger, &policy, &identity, &request, SystemClock.now()) {
                Ok(r) => {
                    eprintln!(
                        "{} {}: recorded in the signed log; the daemon publishes the new verdict{}",
                        request.declaration_id,
                        match request.outcome {
                            HoldOutcome::Release => "released",
                            HoldOutcome::Refuse => "refused",
                            HoldOutcome::Seize => "seized",
                        },
                        if r.consumed_seq.is_some() {
                            " and syncs the license's consumption"
                        } else {
                            ""
                        }
                    );
                    println!("{}", serde_json::to_string_pretty(&r.verdict)?);
                    Ok(Outcome::Ok)
                }
                Err(ResolveError::Refused(why)) => {
                    eprintln!("not recorded: {why}");
                    Ok(Outcome::Refused)
                }
                Err(ResolveError::Ledger(e)) => Err(e.into()),
            }
        }
    }
}

/// Runs `permitgate alert`.
pub fn alert(config: PathBuf, command: AlertCommand) -> Result<Outcome> {
    let (_, identity, mut ledger) = open(&config)?;
    let (id, action, officer, note) = match command {
        AlertCommand::List { all } => {
            let rows = ledger.alert_rows(all, 1_000)?;
            if rows.is_empty() {
                println!("no open alert");
            }
            for r in rows {
                println!(
                    "{:>6}  {:<12}  {}  {}  {}  declaration {}  license {}{}",
                    r.id,
                    r.state.as_str(),
                    r.alert.raised_at,
                    r.alert.kind.as_str(),
                    r.alert.checkpoint,
                    r.alert.declaration_id.as_deref().unwrap_or("-"),
                    r.alert.license_id.as_deref().unwrap_or("-"),
                    r.assignee
                        .map(|a| format!("  assigned to {a}"))
                        .unwrap_or_default()
                );
            }
            return Ok(Outcome::Ok);
        }
        AlertCommand::Acknowledge {
            alert_id,
            officer,
            note,
        } => (alert_id, AlertAction::Acknowledge, officer, note),
        AlertCommand::Assign {
            alert_id,
            to,
            officer,
            note,
        } => (alert_id, AlertAction::Assign(to), officer, note),
        AlertCommand::Close {
            alert_id,
            officer,
            note,
        } => (alert_id, AlertAction::Close, officer, note),
    };
    let now = SystemClock.now();
    match ledger.work_alert(&identity, id, &action, &officer, &note, now) {
        Ok(row) => {
            println!(
                "alert {id} is {} ({} by {officer} at {}); recorded in the signed log",
                row.state.as_str(),
                action.as_str(),
                to_rfc3339(now)
            );
            Ok(Outcome::Ok)
        }
        Err(AlertActionError::Ledger(e)) => Err(e).context("the alert was not changed"),
        Err(why) => {
            eprintln!("not recorded: {why}");
            Ok(Outcome::Refused)
        }
    }
}

/// `permitgate desk` actions.
#[derive(Debug, Subcommand)]
pub enum DeskCommand {
    /// Reads a password on standard input and prints its argon2 hash for `[[desk.officers]]`.
    HashPassword,
}

/// Runs `permitgate desk`.
pub fn desk(command: DeskCommand) -> Result<Outcome> {
    match command {
        DeskCommand::HashPassword => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                anyhow::bail!("the password must be at least 12 characters");
            }
            println!(
                "{}",
                crate::signin::hash_password(password).map_err(anyhow::Error::msg)?
            );
            Ok(Outcome::Ok)
        }
    }
}
