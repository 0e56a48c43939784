//! permitgate: a customs-checkpoint edge agent that verifies single-use,
//! Ed25519-signed export licenses offline and records every verdict.
//!
//! # Layout
//!
//! - [`codec`]: CBOR, the only module that names the CBOR backend.
//! - [`clock`]: Unix seconds, RFC 3339, durations; the system clock.
//! - [`clock_trust`]: whether this clock agrees with the hub's signed time.
//! - [`elements`]: chemical element symbols and HS codes.
//! - [`evidence`]: evidence bundles of a license's use, verifiable offline with the root key.
//! - [`keys`]: Ed25519 keys as PKCS#8 / SPKI PEM files.
//! - [`token`]: license tokens (COSE_Sign1 + CWT), issuing and opening them.
//! - [`declaration`]: shipment declarations in JSON or CBOR.
//! - [`policy`]: the control list, trusted keys, revocations, denied parties, bans.
//! - [`bundle`]: the authority's signed policy bundles.
//! - [`in_force`]: the policy in force and the rule by which a newer one replaces it.
//! - [`verdict`]: verdicts, reason codes, alerts.
//! - [`decision`]: the pure decision engine.
//! - [`record`]: signed consumption records, the unit of sync.
//! - [`registry`]: checkpoint and hub keys from the policy, with validity windows.
//! - [`ledger`]: the SQLite ledger: consumed licenses, hash-chained audit log, outbox.
//! - [`merkle`]: append-only Merkle logs in SQLite, proofs, and signed tree heads (C2SP formats).
//! - [`gate`]: one declaration from payload to committed verdict, tying the above together.
//! - [`cli`]: the command line.
//! - [`broker`]: the embedded MQTT broker for posts without one.
//! - [`daemon`]: `permitgate run`, MQTT in and out around the ledger.
//! - [`tls`]: TLS client configuration for the broker connection.
//! - [`config`]: the agent's configuration file, validated.
//! - [`mqtt`]: MQTT client settings and reconnect backoff shared by all connections.
//! - [`sync`]: the checkpoint side of sync with the hub, and the sync messages.
//! - [`hub`]: `permitgate hub`, the national store of consumption records.
//! - [`bench`]: `permitgate bench`, the end-to-end benchmark.
//! - [`bench_hub`]: `permitgate bench hub`, the hub's catch-up after an outage.
//! - [`qr`]: QR codes of license tokens for paperwork.
//! - [`logging`]: `tracing` set-up, with the filter reloadable on SIGHUP.
//! - [`telemetry`]: metrics, health and the console's live feed, shared by the daemon's tasks.
//! - [`throttle`]: bounded alerting for refused messages, and bounded error details.
//! - [`console`]: the officer's gate console page, rendered on the server.
//! - [`http`]: the operators' HTTP listener: `/metrics`, `/healthz`, the console, the desk.
//! - [`https`]: serving the consoles over TLS.
//! - [`holds`]: an officer's resolution of a held shipment (release, refuse, seize).
//! - [`desk`]: the officers' desk: a license checked, holds resolved, alerts worked.
//! - [`sim`]: a deterministic simulation of a country: posts, hubs, a faulty broker, insiders.
//! - [`signin`]: officers' accounts (argon2) and sessions, for the desk and the national view.
//! - [`ui`]: the pages' texts in each language, and times in the post's zone.
//! - [`screening`]: denied-party screening: names and ids compared, close names scored.
#![forbid(unsafe_code)]

// The officers' pages' texts, one file per language (see `ui`).
rust_i18n::i18n!("locales", fallback = "en");

pub mod bench;
pub mod bench_hub;
pub mod broker;
pub mod bundle;
pub mod cli;
pub mod clock;
pub mod clock_trust;
pub mod codec;
pub mod config;
pub mod console;
pub mod daemon;
pub mod decision;
pub mod declaration;
pub mod desk;
pub mod elements;
pub mod evidence;
pub mod gate;
pub mod holds;
pub mod http;
pub mod https;
pub mod hub;
pub mod in_force;
pub mod keys;
pub mod ledger;
pub mod logging;
pub mod merkle;
pub mod mqtt;
pub mod policy;
pub mod qr;
pub mod record;
pub mod registry;
pub mod screening;
pub mod signin;
pub mod sim;
pub mod strict_key;
pub mod sync;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod ui;
pub mod verdict;
