//! What the national view reads: records of a license across posts,
//! checkpoints and their state, alerts, and flows of consumed licenses.

use serde::Serialize;

use crate::clock::{UnixTime, to_rfc3339};

/// One consumption record, as the national view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    /// Global number in the national log.
    pub g: u64,
    /// The consuming checkpoint.
    pub checkpoint: String,
    /// Its number there.
    pub seq: u64,
    /// The license.
    pub license_id: String,
    /// The declaration.
    pub declaration_id: String,
    /// When consumed, RFC 3339.
    pub consumed_at: String,
    /// Exporter id.
    pub exporter: String,
    /// Consignee id.
    pub consignee: String,
    /// End user id.
    pub end_user: String,
    /// Destination country.
    pub destination: String,
    /// HS codes declared.
    pub hs_codes: Vec<String>,
    /// Net mass in all, kilograms.
    pub net_kg: f64,
    /// When the hub stored it, RFC 3339.
    pub received_at: String,
}

/// One checkpoint as the hub knows it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// Its id.
    pub checkpoint: String,
    /// The hub holds every record of it up to this number.
    pub contiguous: u64,
    /// When the hub last stored records from it, RFC 3339 (null: never).
    pub last_seen: Option<String>,
    /// Seconds since then.
    pub silent_secs: Option<i64>,
    /// The newest of its signed heads the hub holds: size and time.
    pub head_size: Option<u64>,
}

/// What a flow is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowBy {
    /// The declared end user.
    EndUser,
    /// The destination country.
    Destination,
    /// The HS heading (first four digits of the first code declared).
    Heading,
}

impl FlowBy {
    /// From the API's `by=` value.
    pub fn parse(s: &str) -> Option<FlowBy> {
        match s {
            "end_user" => Some(FlowBy::EndUser),
            "destination" => Some(FlowBy::Destination),
            "hs" | "heading" => Some(FlowBy::Heading),
            _ => None,
        }
    }

    /// The SQL expression (both stores) of the key.
    pub(super) fn column(self) -> &'static str {
        match self {
            FlowBy::EndUser => "end_user",
            FlowBy::Destination => "destination",
            FlowBy::Heading => "substr(hs_codes, 1, 4)",
        }
    }
}

/// Consumed licenses of one key on one day.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowRow {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The end user, destination or heading.
    pub key: String,
    /// Licenses consumed.
    pub records: u64,
    /// Net mass in all, kilograms.
    pub net_kg: f64,
}

/// A row of `records` as read, before it is shown.
#[allow(clippy::type_complexity)]
pub(super) fn record_view(
    (
        g,
        checkpoint,
        seq,
        license_id,
        declaration_id,
        consumed_at,
        exporter,
        consignee,
        end_user,
        destination,
        hs,
        net_kg,
        received_at,
    ): (
        i64,
        String,
        i64,
        String,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
        f64,
        i64,
    ),
) -> RecordView {
    RecordView {
        g: g as u64,
        checkpoint,
        seq: seq as u64,
        license_id,
        declaration_id,
        consumed_at: to_rfc3339(consumed_at),
        exporter,
        consignee,
        end_user,
        destination,
        hs_codes: hs
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        net_kg,
        received_at: to_rfc3339(received_at),
    }
}

/// A checkpoint's row as read.
pub(super) fn checkpoint_view(
    checkpoint: String,
    contiguous: i64,
    last_seen: i64,
    head_size: Option<i64>,
    now: UnixTime,
) -> CheckpointView {
    let seen = (last_seen > 0).then_some(last_seen);
    CheckpointView {
        checkpoint,
        contiguous: contiguous as u64,
        last_seen: seen.map(to_rfc3339),
        silent_secs: seen.map(|t| now - t),
        head_size: head_size.map(|s| s as u64),
    }
}

/// The columns a record view reads, in `record_view`'s order.
pub(super) const RECORD_COLUMNS: &str = "g, checkpoint, seq, license_id, declaration_id, consumed_at, exporter, consignee, end_user, destination, hs_codes, net_kg, received_at";
