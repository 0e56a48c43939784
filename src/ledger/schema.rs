//! Ledger schema, versioned with `PRAGMA user_version`; migrations only go forward.

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the core ledger.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

    -- Every verdict ever given, hash-chained: row_hash = H(prev_hash, row).
    CREATE TABLE audit (
        id             INTEGER PRIMARY KEY,
        declaration_id TEXT,
        license_id     TEXT,
        verdict        TEXT    NOT NULL,
        decided_at     INTEGER NOT NULL,
        content_hash   BLOB,
        verdict_json   TEXT    NOT NULL,
        prev_hash      BLOB    NOT NULL,
        row_hash       BLOB    NOT NULL
    );
    CREATE INDEX audit_license ON audit(license_id);
    CREATE INDEX audit_declaration ON audit(declaration_id);
    CREATE INDEX audit_time ON audit(decided_at);

    -- The standing verdict of each declaration id (the first well-formed one).
    CREATE TABLE declarations (
        declaration_id TEXT PRIMARY KEY,
        content_hash   BLOB    NOT NULL,
        audit_id       INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Licenses consumed here: unique by license id. `record` is the signed
    -- consumption record (COSE_Sign1) numbered `seq` for sync.
    CREATE TABLE consumed (
        license_id     TEXT PRIMARY KEY,
        declaration_id TEXT    NOT NULL,
        consumed_at    INTEGER NOT NULL,
        seq            INTEGER NOT NULL UNIQUE,
        audit_id       INTEGER NOT NULL,
        record         BLOB    NOT NULL
    ) WITHOUT ROWID;

    -- Consumption records the hub has not acknowledged yet.
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY);

    -- Consumption records learned from other checkpoints.
    CREATE TABLE remote_consumptions (
        checkpoint     TEXT    NOT NULL,
        seq            INTEGER NOT NULL,
        license_id     TEXT    NOT NULL,
        declaration_id TEXT    NOT NULL,
        consumed_at    INTEGER NOT NULL,
        record         BLOB    NOT NULL,
        received_at    INTEGER NOT NULL,
        PRIMARY KEY (checkpoint, seq)
    ) WITHOUT ROWID;
    CREATE INDEX remote_license ON remote_consumptions(license_id);

    CREATE TABLE alerts (
        id             INTEGER PRIMARY KEY,
        raised_at      INTEGER NOT NULL,
        kind           TEXT    NOT NULL,
        declaration_id TEXT,
        license_id     TEXT,
        alert_json     TEXT    NOT NULL
    );
    CREATE INDEX alerts_time ON alerts(raised_at);
    ",
    // 2: verdicts and alerts committed but not yet acknowledged by the broker.
    "
    CREATE TABLE publish_queue (
        id      INTEGER PRIMARY KEY,
        kind    TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    ",
    // 3: sync with the hub.
    "
    -- Every hub feed entry held here (own records included), by global number.
    CREATE TABLE hub_feed (
        g          INTEGER PRIMARY KEY,
        checkpoint TEXT    NOT NULL,
        seq        INTEGER NOT NULL
    );
    -- Alerts several parties raise about the same facts are stored once.
    ALTER TABLE alerts ADD COLUMN alert_id TEXT;
    CREATE UNIQUE INDEX alerts_alert_id ON alerts(alert_id);
    -- Signed policy bundles applied, newest wins.
    CREATE TABLE policy_bundles (
        version     INTEGER PRIMARY KEY,
        bundle      BLOB    NOT NULL,
        received_at INTEGER NOT NULL
    );
    ",
    // 4: payloads with no readable declaration id, kept under a cap
    // (`UNREADABLE_KEPT`) instead of one audit row each for ever.
    "
    CREATE TABLE unreadable (
        id             INTEGER PRIMARY KEY,
        received_at    INTEGER NOT NULL,
        payload_sha256 TEXT,
        detail         TEXT    NOT NULL
    );
    ",
    // 5: the verifiable log. Every verdict and every consumption record is
    // a leaf of this checkpoint's Merkle log (RFC 9162); each commit signs
    // a tree head. Leaves of ledgers written before it are added by
    // `Ledger::upgrade_log` at start-up, and their consumptions sent to
    // the hub again, as leaves.
    "
    CREATE TABLE log_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    CREATE TABLE log_leaves (n INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
    CREATE TABLE log_heads (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
    ALTER TABLE audit ADD COLUMN leaf INTEGER;
    ALTER TABLE consumed ADD COLUMN leaf INTEGER;
    -- The hub's national log as this checkpoint holds it: every entry's
    -- leaf (own records too) and the tree over them, up to the high-water
    -- mark, so any head the hub signs can be checked against it.
    ALTER TABLE hub_feed ADD COLUMN leaf BLOB;
    CREATE TABLE hub_log_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    -- The hub's signed heads seen: checked against the replica once it is
    -- that long; `checked` says whether it was.
    CREATE TABLE hub_heads (
        size        INTEGER NOT NULL,
        root        BLOB    NOT NULL,
        note        TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        checked     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (size, root)
    ) WITHOUT ROWID;
    -- Another checkpoint's record with the proof of its origin (JSON).
    ALTER TABLE remote_consumptions ADD COLUMN proven TEXT;
    -- Entries learned before the log have no leaf: learn them again.
    DELETE FROM hub_feed;
    DELETE FROM meta WHERE key = 'feed_high_water';
    ",
    // 6: officers' work. A held declaration is kept (its license apart) so
    // an officer's release can decide it again; alerts get a state; what
    // officers did to alerts is listed (and each action is a log leaf).
    // Publications written outside the daemon (an officer's resolution from
    // the command line or the console) wait with `announced = 0` until the
    // daemon picks them up.
    "
    CREATE TABLE holds (
        declaration_id    TEXT PRIMARY KEY,
        audit_id          INTEGER NOT NULL,
        declaration       TEXT    NOT NULL,
        token             BLOB,
        held_at           INTEGER NOT NULL,
        resolved_audit_id INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX holds_open ON holds(held_at) WHERE resolved_audit_id IS NULL;
    ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE alerts ADD COLUMN assignee TEXT;
    ALTER TABLE alerts ADD COLUMN updated_at INTEGER;
    CREATE INDEX alerts_state ON alerts(state, id);
    CREATE TABLE alert_actions (
        id      INTEGER PRIMARY KEY,
        alert   INTEGER NOT NULL,
        action  TEXT    NOT NULL,
        officer TEXT    NOT NULL,
        note    TEXT    NOT NULL,
        at      INTEGER NOT NULL
    );
    CREATE INDEX alert_actions_alert ON alert_actions(alert, id);
    ALTER TABLE publish_queue ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX publish_unannounced ON publish_queue(id) WHERE announced = 0;
    ",
    // 7: equivocation is kept. A checkpoint key that signed two histories
    // puts two records under one (checkpoint, seq): both count as uses of
    // their licenses, so both are kept, told apart by their bytes.
    "
    CREATE TABLE remote_consumptions_v7 (
        checkpoint     TEXT    NOT NULL,
        seq            INTEGER NOT NULL,
        license_id     TEXT    NOT NULL,
        declaration_id TEXT    NOT NULL,
        consumed_at    INTEGER NOT NULL,
        record         BLOB    NOT NULL,
        received_at    INTEGER NOT NULL,
        proven         TEXT,
        PRIMARY KEY (checkpoint, seq, record)
    ) WITHOUT ROWID;
    INSERT INTO remote_consumptions_v7
        SELECT checkpoint, seq, license_id, declaration_id, consumed_at, record, received_at, proven
        FROM remote_consumptions;
    DROP TABLE remote_consumptions;
    ALTER TABLE remote_consumptions_v7 RENAME TO remote_consumptions;
    CREATE INDEX remote_license ON remote_consumptions(license_id);
    ",
];

/// The schema version this build writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// Brings a fresh schema up to `version` only: a ledger as an older build wrote it (for upgrade tests).
#[cfg(test)]
pub(crate) fn migrate_to(conn: &mut Connection, version: usize) -> Result<(), String> {
    migrate_with(conn, &MIGRATIONS[..version])
}

/// Brings the schema up to [`CURRENT`]; refuses a ledger from a newer build.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    migrate_with(conn, MIGRATIONS)
}

/// Applies `migrations[user_version..]`, each in its own transaction;
/// refuses a database from a newer build.
pub(crate) fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), String> {
    let current = migrations.len() as i64;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > current {
        return Err(format!(
            "schema version {version} is newer than this build understands ({current}); refusing to touch it"
        ));
    }
    for (v, sql) in migrations.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", v as i64 + 1))
            .and_then(|_| tx.commit())
            .map_err(|e| format!("migration to version {}: {e}", v + 1))?;
    }
    Ok(())
}
