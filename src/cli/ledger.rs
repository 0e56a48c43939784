//! `permitgate ledger`: the investigators' queries, the log's head, and the
//! check that the ledger is what its signed heads say.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};

use super::{ExportFormat, LedgerAction, Outcome};
use crate::config::Config;
use crate::ledger::Ledger;

/// `ledger head`: the newest signed tree head of this checkpoint's log.
pub(super) fn head(ledger: &Ledger) -> Result<Outcome> {
    match ledger.log_head()? {
        Some((_, note)) => {
            print!("{note}");
            Ok(Outcome::Ok)
        }
        None => {
            eprintln!("the log has no signed head yet (nothing decided)");
            Ok(Outcome::Refused)
        }
    }
}

/// The keys this checkpoint's heads may be signed with: the registry's
/// entries for it, else the public half of its own key.
fn own_keys(cfg: &Config) -> Result<Vec<ed25519_dalek::VerifyingKey>> {
    let registered = cfg.policy.registry.all_checkpoint_keys(&cfg.checkpoint);
    if !registered.is_empty() {
        return Ok(registered);
    }
    let key = crate::keys::load_signing_key(&cfg.checkpoint_key).with_context(|| {
        format!(
            "no registry entry for `{}` in the policy, and its key cannot be read",
            cfg.checkpoint
        )
    })?;
    Ok(vec![key.verifying_key()])
}

/// `ledger check [--against FILE]…`: exit 0 intact, 1 not intact (naming what).
pub(super) fn check(
    cfg: &Config,
    ledger: &Ledger,
    against: &[PathBuf],
    hub_wait: Option<std::time::Duration>,
) -> Result<Outcome> {
    let mut external = Vec::new();
    for f in against {
        let note = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the head in {}", f.display()))?;
        crate::merkle::head::Head::peek(note.as_bytes())
            .map_err(|e| anyhow!("{}: {e}", f.display()))?;
        external.push((format!("the head in {}", f.display()), note));
    }
    if let (Some(wait), Some(_)) = (hub_wait, &cfg.uplink) {
        match crate::sync::ask::held_head(cfg, wait) {
            Ok(Some(note)) => external.push(("the head the hub acknowledged".into(), note)),
            Ok(None) => eprintln!("the hub holds no head of this checkpoint yet"),
            Err(e) => eprintln!("the hub was not asked ({e}); checked against local heads only"),
        }
    }
    let keys = own_keys(cfg)?;
    match ledger.check_log(&keys, &external)? {
        Ok(report) => {
            println!(
                "log intact: {} leaves ({} verdicts, {} licenses consumed), the tables match them",
                report.leaves, report.verdicts, report.consumed
            );
            for (from, size, time) in &report.heads {
                println!("  consistent with {from}: {size} leaves, signed {time}");
            }
            Ok(Outcome::Ok)
        }
        Err(why) => {
            eprintln!("NOT INTACT: {why}");
            Ok(Outcome::Refused)
        }
    }
}

/// Runs a `ledger` action other than `check` and `head` on a read-only ledger.
pub(super) fn ledger_action(ledger: &Ledger, action: LedgerAction) -> Result<Outcome> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match action {
        LedgerAction::Show { license_id } => {
            let report = ledger.license_report(&license_id)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        LedgerAction::Alerts { format, range } => {
            if let ExportFormat::Csv = format {
                writeln!(
                    out,
                    "raised_at,kind,declaration_id,license_id,checkpoint,detail"
                )?;
            }
            ledger.for_each_alert(range.bounds(), |json| match format {
                ExportFormat::Jsonl => writeln!(out, "{json}"),
                ExportFormat::Csv => {
                    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                    let mut detail = joined_reasons(&v, "detail", "; ");
                    if detail.is_empty() {
                        detail = s("detail");
                    }
                    let row = [
                        s("raised_at"),
                        s("kind"),
                        s("declaration_id"),
                        s("license_id"),
                        s("checkpoint"),
                        detail,
                    ];
                    writeln!(out, "{}", csv_row(&row))
                }
            })?;
        }
        LedgerAction::Export {
            format,
            party,
            range,
        } => {
            if let ExportFormat::Csv = format {
                writeln!(
                    out,
                    "audit_id,declaration_id,verdict,reasons,license_id,exporter,end_user,checkpoint,decided_at"
                )?;
            }
            ledger.for_each_verdict_where(
                party.as_deref(),
                range.bounds(),
                |id, json| match format {
                    ExportFormat::Jsonl => writeln!(out, "{json}"),
                    ExportFormat::Csv => {
                        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
                        let reasons = joined_reasons(&v, "code", ";");
                        let row = [
                            id.to_string(),
                            s("declaration_id"),
                            s("verdict"),
                            reasons,
                            s("license_id"),
                            s("exporter"),
                            s("end_user"),
                            s("checkpoint"),
                            s("decided_at"),
                        ];
                        writeln!(out, "{}", csv_row(&row))
                    }
                },
            )?;
        }
        LedgerAction::Check { .. } | LedgerAction::Head => {
            unreachable!("`check` and `head` are handled by `check` and `head`")
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// One field of each of a verdict's or alert's `reasons`, joined by `sep`.
fn joined_reasons(v: &serde_json::Value, field: &str, sep: &str) -> String {
    v["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r[field].as_str())
                .collect::<Vec<_>>()
                .join(sep)
        })
        .unwrap_or_default()
}

fn csv_row(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}
