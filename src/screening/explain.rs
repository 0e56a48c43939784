//! Why a declared name stands as it does against a listed one: the words
//! side by side, each marked as the same, alike, or on one side only, for
//! the hold's detail and the desk.

use super::Kind;
use super::names::{NameKey, Token};
use super::score::{Listed, score};
use serde::{Deserialize, Serialize};

/// How a word of one name stands against the other name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// The same word is in the other name.
    Same,
    /// A word like it is (letters changed, sounds alike, written joined).
    Alike,
    /// Nothing in the other name met it.
    Only,
}

/// One word and its mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Word {
    /// The word as compared (folded).
    pub text: String,
    /// How it stands.
    pub mark: Mark,
}

/// Two names side by side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Explained {
    /// The declared name's words, in the order written.
    pub declared: Vec<Word>,
    /// The listed name's words, in the order written.
    pub listed: Vec<Word>,
}

/// The longest word a side-by-side carries, in characters.
const WORD_MAX: usize = 64;

impl Explained {
    /// At most `words` words of each name, none longer than [`WORD_MAX`]
    /// characters: a verdict carries it.
    pub fn bounded(mut self, words: usize) -> Explained {
        for side in [&mut self.declared, &mut self.listed] {
            side.truncate(words);
            for w in side.iter_mut() {
                if w.text.chars().count() > WORD_MAX {
                    w.text = w.text.chars().take(WORD_MAX).collect();
                }
            }
        }
        self
    }

    /// One line for a verdict's detail: what met, what did not.
    pub fn summary(&self) -> String {
        let pick = |ws: &[Word], m: Mark| -> Vec<String> {
            ws.iter()
                .filter(|w| w.mark == m)
                .map(|w| w.text.clone())
                .collect()
        };
        let mut parts = Vec::new();
        let same = pick(&self.listed, Mark::Same);
        if !same.is_empty() {
            parts.push(format!("same: {}", same.join(" ")));
        }
        let (da, la) = (
            pick(&self.declared, Mark::Alike),
            pick(&self.listed, Mark::Alike),
        );
        if !da.is_empty() || !la.is_empty() {
            parts.push(format!("alike: {} ~ {}", da.join(" "), la.join(" ")));
        }
        let d_only = pick(&self.declared, Mark::Only);
        if !d_only.is_empty() {
            parts.push(format!("only declared: {}", d_only.join(" ")));
        }
        let l_only = pick(&self.listed, Mark::Only);
        if !l_only.is_empty() {
            parts.push(format!("only listed: {}", l_only.join(" ")));
        }
        parts.join("; ")
    }
}

/// The two names' words marked.
pub fn explain(kind: Kind, declared: &NameKey, listed: &Listed) -> Explained {
    // Two names in Chinese (or Korean): character by character.
    if let (Some(a), Some(b)) = (declared.native.as_deref(), listed.native)
        && declared.script() == listed.script
    {
        let mark = |c: char, other: &str| Word {
            text: c.to_string(),
            mark: if other.contains(c) {
                Mark::Same
            } else {
                Mark::Only
            },
        };
        return Explained {
            declared: a.chars().map(|c| mark(c, b)).collect(),
            listed: b.chars().map(|c| mark(c, a)).collect(),
        };
    }
    let s = score(kind, declared, listed);
    let unmarked = |t: &Token| Word {
        text: t.text.to_string(),
        mark: Mark::Only,
    };
    let mut d: Vec<Word> = declared.tokens.iter().map(unmarked).collect();
    let mut l: Vec<Word> = listed.tokens.iter().map(|t| unmarked(t)).collect();
    for p in &s.pairs {
        let joined = |idx: &[usize], ws: &[Word]| -> String {
            idx.iter().map(|&i| ws[i].text.as_str()).collect()
        };
        let mark = if p.sim >= 1.0 && joined(&p.declared, &d) == joined(&p.listed, &l) {
            Mark::Same
        } else {
            Mark::Alike
        };
        for &i in &p.declared {
            d[i].mark = mark;
        }
        for &j in &p.listed {
            l[j].mark = mark;
        }
    }
    Explained {
        declared: d,
        listed: l,
    }
}
