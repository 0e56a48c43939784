//! The screen measured on labelled name pairs (the project's
//! `tests/data/screening_pairs.json`, or an authority's own set in its
//! format): precision, recall and F1 per kind and script, and each pair it
//! got wrong. The tests hold the screen to its goals with it; the
//! screening benchmark prints it beside its timings.

use super::{Closeness, DeniedParty, Kind, ScreenIndex, name_keys};
use std::collections::BTreeMap;

/// A set of labelled pairs: a part to tune on and a part written after.
#[derive(Debug, serde::Deserialize)]
pub struct Set {
    /// Pairs the screen may be tuned on.
    pub tuning: Vec<Pair>,
    /// Pairs written afterwards and never tuned on.
    #[serde(default)]
    pub held_out: Vec<Pair>,
}

/// One labelled pair: a list entry and a name as declared.
#[derive(Debug, serde::Deserialize)]
pub struct Pair {
    /// The entry's kind.
    pub kind: Kind,
    /// The script of the declared name (or the pair's non-Latin side).
    pub script: String,
    /// The entry's name as listed.
    pub listed: String,
    /// The entry's other names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The name as declared.
    pub declared: String,
    /// `exact`, `variant` or `innocent`.
    pub expect: String,
    /// What was changed, in a few words.
    pub how: String,
}

/// The screen's answer for a pair, screened as the gate screens a party
/// against a list holding the pair's entry alone.
pub fn answer(p: &Pair) -> &'static str {
    let list = [DeniedParty {
        kind: p.kind,
        display_name: p.listed.clone(),
        aliases: p.aliases.clone(),
        ..DeniedParty::default()
    }];
    let index = ScreenIndex::new(&list);
    match index.screen("", &name_keys(&p.declared), &list) {
        Some((Closeness::Exact, _)) => "exact",
        Some((Closeness::Possible(_), _)) => "possible",
        _ => "clean",
    }
}

/// Counts of one slice of a set.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    /// Variants and exact names flagged.
    pub tp: u32,
    /// Innocents flagged.
    pub fp: u32,
    /// Variants and exact names not flagged.
    pub fn_: u32,
    /// Innocents left alone.
    pub tn: u32,
    /// Innocents and likenesses refused outright.
    pub refused_wrongly: u32,
    /// Exact names not refused.
    pub exact_missed: u32,
}

impl Tally {
    /// Counts one pair.
    pub fn add(&mut self, expect: &str, answer: &str) {
        let flagged = answer != "clean";
        match (expect == "innocent", flagged) {
            (true, true) => self.fp += 1,
            (true, false) => self.tn += 1,
            (false, true) => self.tp += 1,
            (false, false) => self.fn_ += 1,
        }
        if expect != "exact" && answer == "exact" {
            self.refused_wrongly += 1;
        }
        if expect == "exact" && answer != "exact" {
            self.exact_missed += 1;
        }
    }

    /// Flagged pairs that were meant to be.
    pub fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }

    /// Pairs meant to be flagged that were.
    pub fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1))
    }

    /// The harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// Share of innocents flagged (held).
    pub fn innocents_held(&self) -> f64 {
        f64::from(self.fp) / f64::from((self.fp + self.tn).max(1))
    }

    /// One row of the figures' table.
    pub fn line(&self, what: &str) -> String {
        format!(
            "| {what} | {} | {} | {:.1} % | {:.1} % | {:.3} | {:.1} % |",
            self.tp + self.fn_,
            self.fp + self.tn,
            self.precision() * 100.0,
            self.recall() * 100.0,
            self.f1(),
            self.innocents_held() * 100.0
        )
    }
}

/// A set screened: the whole, each kind and script, and what went wrong.
#[derive(Debug, Default)]
pub struct Report {
    /// Every pair.
    pub all: Tally,
    /// Per `kind …` and `script …`.
    pub slices: BTreeMap<String, Tally>,
    /// One line per pair answered otherwise than labelled.
    pub wrong: Vec<String>,
}

impl Report {
    /// The figures as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| slice | variants | innocents | precision | recall | F1 | innocents held |\n\
             | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        out.push_str(&self.all.line("all"));
        out.push('\n');
        for (k, t) in &self.slices {
            out.push_str(&t.line(k));
            out.push('\n');
        }
        out
    }
}

/// Screens every pair of a set part.
pub fn measure(pairs: &[Pair]) -> Report {
    let mut r = Report::default();
    for p in pairs {
        let answer = answer(p);
        r.all.add(&p.expect, answer);
        let kind = format!("kind {}", p.kind.as_str());
        r.slices.entry(kind).or_default().add(&p.expect, answer);
        let script = format!("script {}", p.script);
        r.slices.entry(script).or_default().add(&p.expect, answer);
        let wrong = match (p.expect.as_str(), answer) {
            ("innocent", "clean") | ("exact", "exact") | ("variant", "possible") => None,
            ("innocent", a) => Some(format!("innocent {a}")),
            ("variant", "clean") => Some("missed".to_owned()),
            (e, a) => Some(format!("{e} answered {a}")),
        };
        if let Some(w) = wrong {
            r.wrong.push(format!(
                "{w}: {:?} for {:?} ({}, {}, {})",
                p.declared,
                p.listed,
                p.kind.as_str(),
                p.script,
                p.how
            ));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(listed: &str, declared: &str, expect: &str) -> Pair {
        Pair {
            kind: Kind::Company,
            script: "latin".into(),
            listed: listed.into(),
            aliases: Vec::new(),
            declared: declared.into(),
            expect: expect.into(),
            how: String::new(),
        }
    }

    #[test]
    fn a_report_counts_what_the_screen_answered() {
        let r = measure(&[
            pair(
                "Shadow Defense Systems LLC",
                "Shadow Defense Systems, L.L.C.",
                "exact",
            ),
            pair(
                "Shadow Defense Systems LLC",
                "Shadow Defence Systems",
                "variant",
            ),
            pair(
                "Shadow Defense Systems LLC",
                "Sunrise Textiles GmbH",
                "variant",
            ),
            pair(
                "Shadow Defense Systems LLC",
                "Shadow Defense Systems LLC",
                "innocent",
            ),
        ]);
        let t = r.all;
        assert_eq!((t.tp, t.fn_, t.fp, t.tn), (2, 1, 1, 0));
        assert_eq!(t.refused_wrongly, 1);
        assert_eq!(r.wrong.len(), 2, "{:?}", r.wrong);
        assert!((t.precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((t.recall() - 2.0 / 3.0).abs() < 1e-9);
        assert!(
            r.table().contains("| kind company | 3 | 1 |"),
            "{}",
            r.table()
        );
    }
}
