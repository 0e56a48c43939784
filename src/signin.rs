//! Signing officers in: accounts with argon2 password hashes, sessions
//! that expire. Used by the gate console's desk and the hub's national view.
//!
//! Design: sessions live in memory (a restart signs everyone out); the
//! session cookie is `HttpOnly` and `SameSite=Strict`, so another site's
//! page cannot make a signed-in browser act, and `Secure` over HTTPS.

use std::collections::HashMap;
use std::sync::Mutex;

use html_escape::encode_text as esc;

use crate::clock::{SharedClock, UnixTime};
use crate::config::{DeskConfig, Role};

/// The session cookie's name.
pub const COOKIE: &str = "permitgate_session";

/// A signed-in officer.
#[derive(Debug, Clone)]
pub struct Session {
    /// Their id.
    pub officer: String,
    /// What they may do.
    pub role: Role,
    /// When the session ends.
    pub expires: UnixTime,
}

/// Accounts and the sessions of those signed in.
pub struct SignIn {
    config: DeskConfig,
    sessions: Mutex<HashMap<String, Session>>,
    clock: SharedClock,
}

impl SignIn {
    /// Accounts from a `[desk]` (or the hub's `[national]`) table.
    pub fn new(config: DeskConfig, clock: SharedClock) -> SignIn {
        SignIn {
            config,
            sessions: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// Checks an officer's password (slow on purpose: argon2); a session token when right.
    pub fn sign_in(&self, officer: &str, password: &str) -> Option<String> {
        use argon2::PasswordVerifier;
        let account = self.config.officers.iter().find(|o| o.id == officer)?;
        let hash = argon2::PasswordHash::new(&account.password_hash).ok()?;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()?;
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let token = hex::encode(bytes);
        let now = self.clock.now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            token.clone(),
            Session {
                officer: account.id.clone(),
                role: account.role,
                expires: now + (self.config.session_minutes * 60) as i64,
            },
        );
        Some(token)
    }

    /// The session a cookie header carries, if it has not expired.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let token = token_of(cookie_header)?;
        let now = self.clock.now();
        let mut sessions = lock(&self.sessions);
        match sessions.get(&token) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(&token);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn sign_out(&self, cookie_header: Option<&str>) {
        if let Some(token) = token_of(cookie_header) {
            lock(&self.sessions).remove(&token);
        }
    }

    /// How long a session lasts, seconds.
    pub fn session_secs(&self) -> u64 {
        self.config.session_minutes * 60
    }
}

fn token_of(cookie_header: Option<&str>) -> Option<String> {
    cookie_value(cookie_header?, COOKIE).map(str::to_owned)
}

/// The value of the cookie `name` in a `Cookie` header.
pub fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The sign-in page of `place`, with a message when the last try failed.
pub fn sign_in_page(place: &str, failed: bool, ui: &crate::ui::Ui) -> String {
    ui.localize(SIGN_IN_PAGE)
        .replace("{checkpoint}", &esc(place))
        .replace(
            "{message}",
            &if failed {
                format!("<p id=\"message\">{}</p>", esc(&ui.t("signin.wrong")))
            } else {
                String::new()
            },
        )
}

/// Makes an argon2 hash of a password for `[[desk.officers]]`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

const SIGN_IN_PAGE: &str = include_str!("signin.html");

/// The `Cookie` header of a request.
pub fn cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
}

/// The answer to a sign-in form: the session cookie and a redirect to
/// `then`, or the form again saying it failed. Runs argon2 off the async threads.
pub async fn answer_sign_in(
    signin: std::sync::Arc<SignIn>,
    (officer, password): (String, String),
    place: &str,
    ui: &crate::ui::Ui,
    secure: bool,
    then: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let who = officer.clone();
    let checked = signin.clone();
    let token = tokio::task::spawn_blocking(move || checked.sign_in(&officer, &password))
        .await
        .ok()
        .flatten();
    match token {
        Some(token) => {
            tracing::info!(officer = %who, "signed in");
            (
                [(
                    axum::http::header::SET_COOKIE,
                    format!(
                        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
                        signin.session_secs(),
                        if secure { "; Secure" } else { "" }
                    ),
                )],
                axum::response::Redirect::to(then),
            )
                .into_response()
        }
        None => {
            tracing::warn!(officer = %who, "sign-in refused");
            (
                axum::http::StatusCode::UNAUTHORIZED,
                axum::response::Html(sign_in_page(place, true, ui)),
            )
                .into_response()
        }
    }
}

/// Signs out: the session ends, the cookie is cleared, back to the sign-in form.
pub fn answer_sign_out(
    signin: Option<&SignIn>,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(s) = signin {
        s.sign_out(cookie(headers));
    }
    (
        [(
            axum::http::header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )],
        axum::response::Redirect::to("/signin"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::config::OfficerAccount;

    #[test]
    fn a_session_ends_when_its_minutes_are_up_or_at_sign_out() {
        let clock = std::sync::Arc::new(FixedClock::at(1_790_000_000));
        let signin = SignIn::new(
            DeskConfig {
                session_minutes: 30,
                officers: vec![OfficerAccount {
                    id: "o-7".into(),
                    role: Role::Officer,
                    password_hash: hash_password("correct horse battery").unwrap(),
                }],
            },
            clock.clone(),
        );
        assert_eq!(signin.sign_in("o-7", "wrong"), None);
        assert_eq!(signin.sign_in("o-8", "correct horse battery"), None);
        let token = signin.sign_in("o-7", "correct horse battery").unwrap();
        let header = format!("lang=en; {COOKIE}={token}");
        assert_eq!(signin.session(Some(&header)).unwrap().officer, "o-7");
        clock.set(1_790_000_000 + 30 * 60 - 1);
        assert!(signin.session(Some(&header)).is_some());
        clock.set(1_790_000_000 + 30 * 60);
        assert!(signin.session(Some(&header)).is_none(), "expired");

        let token = signin.sign_in("o-7", "correct horse battery").unwrap();
        let header = format!("{COOKIE}={token}");
        signin.sign_out(Some(&header));
        assert!(signin.session(Some(&header)).is_none(), "signed out");
    }
}
