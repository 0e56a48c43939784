//! Opening a ledger: creating or claiming it, its settings, and integrity checks.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::*;

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` for `checkpoint`,
    /// after checking the whole file (`quick_check`).
    pub fn open(path: &Path, checkpoint: &str) -> Result<Ledger, LedgerError> {
        let ledger = Ledger::open_checking_later(path, checkpoint)?;
        ledger.integrity_check()?;
        Ok(ledger)
    }

    /// Opens the ledger like [`Ledger::open`] but leaves the check of the
    /// whole file to [`Ledger::integrity_check`], which the daemon runs
    /// once it is ready: on ten million rows the check takes seconds.
    /// A ledger that failed a check before (it has a marker beside it) is
    /// refused here.
    pub fn open_checking_later(path: &Path, checkpoint: &str) -> Result<Ledger, LedgerError> {
        let marker = damage_marker(path);
        if let Ok(why) = std::fs::read_to_string(&marker) {
            return Err(LedgerError::unusable(
                path,
                Operation::Open,
                format!(
                    "failed its integrity check ({}); restore it from a backup, then remove {}",
                    why.trim(),
                    marker.display()
                ),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                LedgerError::unusable(
                    path,
                    Operation::Open,
                    format!("cannot create its directory: {e}"),
                )
            })?;
        }
        let conn = Connection::open(path).map_err(sql(path, Operation::Open))?;
        // SQLite quietly opens a write-protected file read-only; every
        // decision would then fail. Refuse at start instead.
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(LedgerError::unusable(
                path,
                Operation::Open,
                "read-only (file permissions or a read-only filesystem); the daemon must be able to write it",
            ));
        }
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            checkpoint: checkpoint.to_owned(),
        };
        ledger.setup(true)?;
        ledger.claim(checkpoint)?;
        Ok(ledger)
    }

    /// A second connection to this ledger, for another thread (the sync
    /// task). The file was checked and migrated when this one opened, so
    /// neither is done again: on a large ledger they cost seconds.
    pub fn second_handle(&self) -> Result<Ledger, LedgerError> {
        let conn = Connection::open(&self.path).map_err(sql(&self.path, Operation::Open))?;
        let ledger = Ledger {
            conn,
            path: self.path.clone(),
            checkpoint: self.checkpoint.clone(),
        };
        ledger.configure()?;
        ledger
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql(&self.path, Operation::Open))?;
        Ok(ledger)
    }

    /// Opens an existing ledger read-only, or `None` if the file does not exist.
    pub fn open_read_only(path: &Path) -> Result<Option<Ledger>, LedgerError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql(path, Operation::Open))?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            checkpoint: String::new(),
        };
        ledger.setup(false)?;
        ledger.quick_check()?;
        ledger.checkpoint = stored_checkpoint(&ledger.conn)
            .map_err(sql(path, Operation::Open))?
            .unwrap_or_default();
        Ok(Some(ledger))
    }

    fn setup(&mut self, writable: bool) -> Result<(), LedgerError> {
        let p = self.path.clone();
        let unusable = |message: String| LedgerError::unusable(&p, Operation::Open, message);
        // A foreign or truncated file fails here, loudly; it is never recreated.
        self.conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| unusable(format!("not a readable SQLite database ({e})")))?;
        self.configure()?;
        if writable {
            self.conn
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(sql(&self.path, Operation::Open))?;
            self.conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(sql(&self.path, Operation::Open))?;
            schema::migrate(&mut self.conn).map_err(unusable)?;
        } else {
            let v: i64 = self
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(sql(&self.path, Operation::Open))?;
            if v != schema::CURRENT {
                return Err(unusable(format!(
                    "schema version {v}, this build reads {}",
                    schema::CURRENT
                )));
            }
        }
        Ok(())
    }

    /// Checks the whole file (SQLite's `quick_check`). A damaged ledger
    /// gets a marker file beside it (`ledger.db.damaged`), so it is refused
    /// at every later start until an operator restores it.
    pub fn integrity_check(&self) -> Result<(), LedgerError> {
        let result = self.quick_check();
        if let Err(LedgerError {
            failure: Failure::Unusable(message),
            ..
        }) = &result
        {
            // Best effort: the error itself is reported either way.
            let _ = std::fs::write(damage_marker(&self.path), format!("{message}\n"));
        }
        result
    }

    /// Marks the ledger damaged (the marker file beside it) for `why`, and
    /// returns the error that says so.
    pub fn mark_damaged(&self, why: &str) -> LedgerError {
        let _ = std::fs::write(damage_marker(&self.path), format!("{why}\n"));
        LedgerError::unusable(&self.path, Operation::Open, why.to_owned())
    }

    fn quick_check(&self) -> Result<(), LedgerError> {
        let unusable =
            |message: String| LedgerError::unusable(&self.path, Operation::Open, message);
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::DatabaseCorrupt
                        || f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    unusable(format!("integrity check failed: {e}"))
                }
                e => sql(&self.path, Operation::Open)(e),
            })?;
        if check != "ok" {
            return Err(unusable(format!("integrity check failed: {check}")));
        }
        Ok(())
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Settings every connection needs.
    fn configure(&self) -> Result<(), LedgerError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql(&self.path, Operation::Open))?;
        // The decision path alone uses more than rusqlite's default 16
        // cached statements; an evicted one is parsed again per decision.
        self.conn.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    /// Records the checkpoint id on first use; refuses a ledger of another checkpoint.
    fn claim(&mut self, checkpoint: &str) -> Result<(), LedgerError> {
        let owner = stored_checkpoint(&self.conn).map_err(sql(&self.path, Operation::Open))?;
        match owner {
            Some(o) if o != checkpoint => Err(LedgerError::unusable(
                &self.path,
                Operation::Open,
                format!("belongs to checkpoint `{o}`, not `{checkpoint}`"),
            )),
            Some(_) => Ok(()),
            None => self
                .conn
                .prepare_cached("INSERT INTO meta(key, value) VALUES ('checkpoint', ?1)")
                .and_then(|mut st| st.execute([checkpoint]))
                .map(|_| ())
                .map_err(sql(&self.path, Operation::Open)),
        }
    }
}

/// The file beside a ledger that says it failed an integrity check.
pub fn damage_marker(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".damaged");
    PathBuf::from(name)
}

/// The checkpoint id recorded in the ledger, if any.
fn stored_checkpoint(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key='checkpoint'", [], |r| {
        r.get(0)
    })
    .optional()
}
