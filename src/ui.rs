//! What the officers' pages say: in the officer's language, with times in
//! the post's time zone and UTC beside them.
//!
//! Design: the texts live in `locales/<language>.yml`, one file per
//! language (`rust-i18n` compiles them in); the language list is read from
//! what is there, so a third language is a file, not a code change. A
//! template names a text as `{t:key}`. The officer's choice (a cookie set
//! by the language links) wins over the browser's `Accept-Language`;
//! English is the fallback for anything missing.

use std::borrow::Cow;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as esc};
use jiff::tz::TimeZone;

use crate::verdict::ReasonCode;

/// The cookie that keeps an officer's choice of language.
pub const LANG_COOKIE: &str = "permitgate_lang";

/// The languages there are texts for.
pub fn languages() -> Vec<&'static str> {
    static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut l: Vec<&'static str> = crate::_rust_i18n_available_locales()
            .into_iter()
            .map(|l| &*Box::leak(l.into_owned().into_boxed_str()))
            .collect();
        l.sort_unstable();
        l
    });
    ALL.clone()
}

/// The post's time zone: the IANA name given, or the machine's own.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(n) => TimeZone::get(n).map_err(|e| format!("`http.time_zone` `{n}`: {e}")),
        None => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
    }
}

/// One page's language and time zone.
#[derive(Debug, Clone)]
pub struct Ui {
    lang: &'static str,
    tz: TimeZone,
}

impl Ui {
    /// English, times in UTC.
    pub fn english() -> Ui {
        Ui {
            lang: "en",
            tz: TimeZone::UTC,
        }
    }

    /// The language of a request (its cookie, else its `Accept-Language`), in `tz`.
    pub fn for_request(
        cookie_header: Option<&str>,
        accept_language: Option<&str>,
        tz: &TimeZone,
    ) -> Ui {
        let chosen = cookie_header
            .and_then(|h| crate::signin::cookie_value(h, LANG_COOKIE))
            .and_then(matching);
        let lang = chosen
            .or_else(|| accept_language.and_then(preferred))
            .unwrap_or("en");
        Ui {
            lang,
            tz: tz.clone(),
        }
    }

    /// The language of a request with these headers, in `tz`.
    pub fn for_headers(headers: &axum::http::HeaderMap, tz: &TimeZone) -> Ui {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
        };
        Ui::for_request(
            text(axum::http::header::COOKIE),
            text(axum::http::header::ACCEPT_LANGUAGE),
            tz,
        )
    }

    /// The language's tag (`en`, `zh-CN`).
    pub fn lang(&self) -> &'static str {
        self.lang
    }

    /// A text.
    pub fn t(&self, key: &str) -> String {
        let text: Cow<'_, str> = crate::_rust_i18n_t!(key, locale = self.lang);
        text.into_owned()
    }

    /// A text with its `%{name}` places filled.
    pub fn t_with(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.t(key);
        for (k, v) in args {
            text = text.replace(&format!("%{{{k}}}"), v);
        }
        text
    }

    /// What a reason code means, in plain words.
    pub fn reason(&self, code: ReasonCode) -> String {
        self.t(&format!("reason.{}", code.as_str()))
    }

    /// A time (RFC 3339) in the post's zone with UTC beside it; as given when unreadable.
    pub fn time(&self, rfc3339: &str) -> String {
        self.format(rfc3339, "%Y-%m-%d %H:%M:%S %Z", "%H:%M:%S")
    }

    /// A time of day (for rows of today's feed), with UTC beside it.
    pub fn clock(&self, rfc3339: &str) -> String {
        self.format(rfc3339, "%H:%M:%S %Z", "%H:%M")
    }

    fn format(&self, rfc3339: &str, local: &str, utc: &str) -> String {
        let Ok(ts) = rfc3339.parse::<jiff::Timestamp>() else {
            return rfc3339.to_owned();
        };
        let here = ts.to_zoned_datetime(self.tz.clone());
        if here.offset() == jiff::tz::Offset::UTC {
            return format!(
                "{} UTC",
                ts.to_zoned_datetime(TimeZone::UTC)
                    .strftime(&local.replace(" %Z", ""))
            );
        }
        format!(
            "{} ({} UTC)",
            here.strftime(local),
            ts.to_zoned_datetime(TimeZone::UTC).strftime(utc)
        )
    }

    /// A template with each `{t:key}` replaced by its text (escaped for HTML).
    pub fn localize(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(i) = rest.find("{t:") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 3..];
            match after.find('}') {
                Some(j) => {
                    out.push_str(&esc(&self.t(&after[..j])));
                    rest = &after[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out.replace("{lang}", self.lang)
            .replace("{languages}", &self.language_links())
    }

    /// Links to each language (the current one without a link).
    fn language_links(&self) -> String {
        languages()
            .into_iter()
            .map(|l| {
                let name: Cow<'_, str> = crate::_rust_i18n_t!("lang.name", locale = l);
                if l == self.lang {
                    format!("<b>{}</b>", esc(&name))
                } else {
                    format!(
                        "<a href=\"/lang?to={}\" lang=\"{}\">{}</a>",
                        attr(l),
                        attr(l),
                        esc(&name)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// Keeps an officer's choice of language (a cookie for a year) and sends
/// them back to the page they chose it on.
pub fn choose(headers: &axum::http::HeaderMap, to: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let back = headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| &r[i + 3 + j..]))
        })
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/")
        .to_owned();
    let Some(lang) = matching(to) else {
        return axum::response::Redirect::to(&back).into_response();
    };
    (
        [(
            axum::http::header::SET_COOKIE,
            format!("{LANG_COOKIE}={lang}; SameSite=Strict; Path=/; Max-Age=31536000"),
        )],
        axum::response::Redirect::to(&back),
    )
        .into_response()
}

/// The language tag among ours that `tag` names (`zh` and `zh-cn` are `zh-CN`).
pub fn matching(tag: &str) -> Option<&'static str> {
    let tag = tag.trim();
    let all = languages();
    all.iter()
        .find(|l| l.eq_ignore_ascii_case(tag))
        .or_else(|| {
            let primary = tag.split(['-', '_']).next().unwrap_or("");
            all.iter().find(|l| {
                l.split('-')
                    .next()
                    .is_some_and(|p| p.eq_ignore_ascii_case(primary))
            })
        })
        .copied()
}

/// The first of ours in an `Accept-Language` header, by its weights.
fn preferred(header: &str) -> Option<&'static str> {
    let mut tags: Vec<(f32, &str)> = header
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    tags.into_iter().find_map(|(_, t)| matching(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_text_and_every_reason() {
        let en_keys: Vec<String> = include_str!("../locales/en.yml")
            .lines()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_owned()))
            .filter(|k| !k.starts_with('_'))
            .collect();
        for code in ReasonCode::ALL {
            assert!(
                en_keys.contains(&format!("reason.{}", code.as_str())),
                "{code:?}"
            );
        }
        for lang in languages() {
            let ui = Ui {
                lang: matching(lang).unwrap(),
                tz: TimeZone::UTC,
            };
            for key in &en_keys {
                let text = ui.t(key);
                assert!(!text.is_empty() && text != *key, "{lang}: {key}");
                if lang != "en" && key != "common.utc" {
                    assert_ne!(
                        text,
                        Ui::english().t(key),
                        "{lang}: {key} is not translated"
                    );
                }
            }
        }
        assert!(languages().contains(&"zh-CN"));
    }

    #[test]
    fn the_choice_wins_over_the_browser_and_the_browser_over_english() {
        let tz = TimeZone::UTC;
        assert_eq!(
            Ui::for_request(None, Some("zh-CN,zh;q=0.9,en;q=0.8"), &tz).lang(),
            "zh-CN"
        );
        assert_eq!(
            Ui::for_request(None, Some("fr-FR, zh;q=0.5"), &tz).lang(),
            "zh-CN"
        );
        assert_eq!(
            Ui::for_request(None, Some("en;q=0.9, zh;q=0.5"), &tz).lang(),
            "en"
        );
        assert_eq!(
            Ui::for_request(Some("a=b; permitgate_lang=en"), Some("zh-CN"), &tz).lang(),
            "en"
        );
        assert_eq!(Ui::for_request(None, Some("fr"), &tz).lang(), "en");
        assert_eq!(Ui::for_request(None, None, &tz).lang(), "en");
    }

    #[test]
    fn times_are_local_with_utc_beside_them() {
        let ui = Ui {
            lang: "zh-CN",
            tz: time_zone(Some("Asia/Shanghai")).unwrap(),
        };
        assert_eq!(
            ui.time("2026-03-01T09:00:00Z"),
            "2026-03-01 17:00:00 CST (09:00:00 UTC)"
        );
        assert_eq!(ui.clock("2026-03-01T09:00:00Z"), "17:00:00 CST (09:00 UTC)");
        assert_eq!(
            Ui::english().time("2026-03-01T09:00:00Z"),
            "2026-03-01 09:00:00 UTC"
        );
        assert_eq!(Ui::english().time("not a time"), "not a time");
        assert_eq!(
            ui.localize("<p>{t:verdict.cleared}</p><html lang=\"{lang}\">"),
            "<p>放行</p><html lang=\"zh-CN\">"
        );
    }
}
