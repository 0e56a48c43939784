//! Officers working alerts: acknowledge, assign, close. Each action is a
//! row of the alert's history and a leaf of the signed log.

use rusqlite::{OptionalExtension, params};

use super::*;
use crate::record::{AlertActionLeaf, KIND_ALERT_ACTION};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Nobody has taken it yet.
    Open,
    /// An officer has seen it (and may have assigned it).
    Acknowledged,
    /// Dealt with, with a note.
    Closed,
}

impl AlertState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Closed => "closed",
        }
    }

    fn from_stored(s: &str) -> AlertState {
        match s {
            "acknowledged" => AlertState::Acknowledged,
            "closed" => AlertState::Closed,
            _ => AlertState::Open,
        }
    }
}

/// What an officer does to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAction {
    /// "I have seen it."
    Acknowledge,
    /// Hands it to an officer (by id).
    Assign(String),
    /// Dealt with.
    Close,
}

impl AlertAction {
    /// As the history and the log name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "acknowledge",
            AlertAction::Assign(_) => "assign",
            AlertAction::Close => "close",
        }
    }
}

/// An alert as the officers' list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    /// Its number in this ledger.
    pub id: i64,
    /// Where it stands.
    pub state: AlertState,
    /// The officer it is assigned to.
    pub assignee: Option<String>,
    /// The alert.
    pub alert: Alert,
}

/// What was done to an alert, and by whom.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertHistoryEntry {
    /// `acknowledge`, `assign`, `close`.
    pub action: String,
    /// The officer.
    pub officer: String,
    /// Their note.
    pub note: String,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// Why an action on an alert was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AlertActionError {
    /// No alert with that number.
    #[error("there is no alert {0} at this post")]
    Unknown(i64),
    /// The action does not apply in the alert's state.
    #[error("alert {id} is {state}: {why}")]
    NotNow {
        /// The alert.
        id: i64,
        /// Its state.
        state: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The officer's id, or the note a closure needs, is missing.
    #[error("{0}")]
    Incomplete(&'static str),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The state an action moves an alert to (pure), or why it cannot.
pub fn next_state(state: AlertState, action: &AlertAction) -> Result<AlertState, &'static str> {
    match (state, action) {
        (AlertState::Closed, _) => Err("it was closed; a closed alert stays closed"),
        (AlertState::Acknowledged, AlertAction::Acknowledge) => Err("it was already acknowledged"),
        (_, AlertAction::Close) => Ok(AlertState::Closed),
        (_, AlertAction::Acknowledge | AlertAction::Assign(_)) => Ok(AlertState::Acknowledged),
    }
}

impl Ledger {
    /// Alerts not closed, newest first, or every alert when `closed_too`.
    pub fn alert_rows(&self, closed_too: bool, limit: usize) -> Result<Vec<AlertRow>, LedgerError> {
        let sql_text = if closed_too {
            "SELECT id, state, assignee, alert_json FROM alerts ORDER BY id DESC LIMIT ?1"
        } else {
            "SELECT id, state, assignee, alert_json FROM alerts WHERE state != 'closed' ORDER BY id DESC LIMIT ?1"
        };
        let rows = self
            .conn
            .prepare_cached(sql_text)
            .and_then(|mut st| {
                st.query_map([limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<(i64, String, Option<String>, String)>>>()
            })
            .map_err(sql(&self.path, Operation::Read))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, state, assignee, json)| {
                Some(AlertRow {
                    id,
                    state: AlertState::from_stored(&state),
                    assignee,
                    alert: serde_json::from_str(&json).ok()?,
                })
            })
            .collect())
    }

    /// What officers did to an alert, oldest first.
    pub fn alert_history(&self, id: i64) -> Result<Vec<AlertHistoryEntry>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT action, officer, note, at FROM alert_actions WHERE alert = ?1 ORDER BY id",
            )
            .and_then(|mut st| {
                st.query_map([id], |r| {
                    Ok(AlertHistoryEntry {
                        action: r.get(0)?,
                        officer: r.get(1)?,
                        note: r.get(2)?,
                        at: crate::clock::to_rfc3339(r.get(3)?),
                    })
                })?
                .collect()
            })
            .map_err(sql(&self.path, Operation::Read))
    }

    /// Records an officer's action on an alert: its new state, a history
    /// row, and a leaf of the signed log, in one transaction.
    pub fn work_alert(
        &mut self,
        identity: &Identity,
        id: i64,
        action: &AlertAction,
        officer: &str,
        note: &str,
        now: UnixTime,
    ) -> Result<AlertRow, AlertActionError> {
        let officer = officer.trim();
        if officer.is_empty() {
            return Err(AlertActionError::Incomplete("an officer id is required"));
        }
        if *action == AlertAction::Close && note.trim().is_empty() {
            return Err(AlertActionError::Incomplete(
                "closing an alert needs a note saying what was done",
            ));
        }
        if let AlertAction::Assign(to) = action
            && to.trim().is_empty()
        {
            return Err(AlertActionError::Incomplete(
                "assign to whom? name an officer",
            ));
        }
        let note = match action {
            AlertAction::Assign(to) if note.trim().is_empty() => {
                format!("assigned to {}", to.trim())
            }
            _ => crate::throttle::truncate(note.trim(), crate::holds::NOTE_MAX).to_owned(),
        };
        let path = self.path.clone();
        let mut batch = self.begin(identity)?;
        let found: Option<(String, Option<String>, String)> = batch
            .tx
            .query_row(
                "SELECT state, assignee, alert_json FROM alerts WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(&path, Operation::Decide))?;
        let Some((state, assignee, json)) = found else {
            return Err(AlertActionError::Unknown(id));
        };
        let state = AlertState::from_stored(&state);
        let next = next_state(state, action).map_err(|why| AlertActionError::NotNow {
            id,
            state: state.as_str(),
            why,
        })?;
        let assignee = match action {
            AlertAction::Assign(to) => Some(to.trim().to_owned()),
            _ => assignee,
        };
        let leaf = AlertActionLeaf {
            kind: KIND_ALERT_ACTION.to_owned(),
            alert: id,
            action: action.as_str().to_owned(),
            officer: officer.to_owned(),
            note: note.clone(),
            at: now,
        }
        .to_leaf();
        batch.append_officer_leaf(&leaf, now)?;
        batch
            .tx
            .execute(
                "UPDATE alerts SET state = ?1, assignee = ?2, updated_at = ?3 WHERE id = ?4",
                params![next.as_str(), assignee, now, id],
            )
            .and_then(|_| {
                batch.tx.execute(
                    "INSERT INTO alert_actions(alert, action, officer, note, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, action.as_str(), officer, note, now],
                )
            })
            .map_err(sql(&path, Operation::Decide))?;
        batch.commit()?;
        Ok(AlertRow {
            id,
            state: next,
            assignee,
            alert: serde_json::from_str(&json).map_err(|e| {
                LedgerError::unusable(
                    &path,
                    Operation::Read,
                    format!("alert {id} is unreadable: {e}"),
                )
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_action() {
        use AlertAction as A;
        use AlertState as S;
        let assign = A::Assign("o-2".into());
        for (state, action, want) in [
            (S::Open, &A::Acknowledge, Ok(S::Acknowledged)),
            (S::Open, &assign, Ok(S::Acknowledged)),
            (S::Open, &A::Close, Ok(S::Closed)),
            (
                S::Acknowledged,
                &A::Acknowledge,
                Err("it was already acknowledged"),
            ),
            (S::Acknowledged, &assign, Ok(S::Acknowledged)),
            (S::Acknowledged, &A::Close, Ok(S::Closed)),
            (
                S::Closed,
                &A::Acknowledge,
                Err("it was closed; a closed alert stays closed"),
            ),
            (
                S::Closed,
                &assign,
                Err("it was closed; a closed alert stays closed"),
            ),
            (
                S::Closed,
                &A::Close,
                Err("it was closed; a closed alert stays closed"),
            ),
        ] {
            assert_eq!(next_state(state, action), want, "{state:?} {action:?}");
        }
    }
}
