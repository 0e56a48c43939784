//! Denied-party screening: names and ids as the list compares them, and
//! how close a declared party comes to a listed one.
//!
//! A name goes through: look-alikes folded (Unicode TR39 skeleton, on the
//! name as written, so capitals fold too), other scripts transliterated to
//! Latin (`deunicode`: Cyrillic letter by letter, Chinese as pinyin),
//! lower case, dots and apostrophes dropped inside words (`L.L.C.` is
//! `llc`), legal forms brought to one spelling and set aside (`Limited
//! Liability Company`, `L.L.C.`, `ООО` → `llc`; `Co., Ltd.`, `有限公司` →
//! `ltd`), words sorted. What is left, without the words that many firms
//! share (places, `technology`, `trading`…), is the name's distinctive part.
//!
//! Design: only certainty refuses. An exact hit is the listed id itself, or
//! the listed name itself after lossless steps alone (case, width,
//! spacing, punctuation, one spelling per legal form, the same legal form):
//! it rejects. Anything reached through a lossy step (look-alikes folded,
//! another script transliterated, words sorted, a legal form dropped, an
//! id's look-alike, letters changed) can at most hold, for an officer: two
//! people whose names hold the same words in another order, or two firms
//! whose Chinese names sound alike, are not one party. Inexact names are
//! scored by the edit distance between the distinctive parts
//! (Damerau–Levenshtein, normalised), so a letter changed or a word moved
//! scores high while two firms that share only common words score low.
//! The thresholds were set on `tests/data/screening.json` (see
//! docs/operations.md for the figures).

use unicode_normalization::UnicodeNormalization;

/// Least score of a name that holds the shipment as `possible_denied_party`.
pub const POSSIBLE_AT: f64 = 0.86;
/// Shortest distinctive part (letters) scored inexactly: below it, a
/// changed letter is another name.
const MIN_DISTINCTIVE: usize = 5;
/// The score of a name with the listed one's words reached through a lossy
/// step (sorted, look-alikes folded, transliterated, a legal form dropped).
const SAME_WORDS: f64 = 0.97;
/// The score of an id that is the listed one's look-alike, not itself.
pub const ID_LOOK_ALIKE: f64 = 0.99;

/// A name as the screen compares it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameKey {
    /// Every word but the legal form, sorted.
    pub words: Vec<String>,
    /// The legal form, in one spelling (`llc`, `ltd`, `gmbh`…), if any.
    pub form: Option<&'static str>,
    /// The distinctive words, sorted and joined without spaces.
    pub distinctive: String,
    /// The distinctive words in the order written, joined without spaces.
    pub written: String,
    /// The name after lossless steps alone (case, width, spacing,
    /// punctuation; the legal form set aside), words in the order written,
    /// in its own script: what an outright refusal needs to match.
    pub exact: String,
}

/// How a declared party stands against one list entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Closeness {
    /// The same party: rejects.
    Exact,
    /// Close enough for an officer to look (the score, 0–1).
    Possible(f64),
    /// Not this entry.
    Apart,
}

/// Legal forms: (spelling after folding, one spelling). Longest first, as
/// they are matched against the name's end and start word by word.
const LEGAL_FORMS: &[(&str, &str)] = &[
    ("gesellschaft mit beschrankter haftung", "gmbh"),
    ("obshchestvo s ogranichennoi otvetstvennostiu", "llc"),
    ("limited liability company", "llc"),
    ("limited liability co", "llc"),
    ("public limited company", "plc"),
    ("you xian ze ren gong si", "ltd"),
    ("gu fen you xian gong si", "ltd"),
    ("you xian gong si", "ltd"),
    ("company limited", "ltd"),
    ("co limited", "ltd"),
    ("co ltd", "ltd"),
    ("pte ltd", "ltd"),
    ("pty ltd", "ltd"),
    ("sdn bhd", "ltd"),
    ("youxian gongsi", "ltd"),
    ("youxian zeren gongsi", "ltd"),
    ("fz llc", "fze"),
    ("fzco", "fze"),
    ("fze", "fze"),
    ("private limited", "ltd"),
    ("gong si", "co"),
    ("limited", "ltd"),
    ("ltd", "ltd"),
    ("llc", "llc"),
    ("ooo", "llc"),
    ("zao", "jsc"),
    ("oao", "jsc"),
    ("pao", "jsc"),
    ("jsc", "jsc"),
    ("gmbh", "gmbh"),
    ("incorporated", "inc"),
    ("inc", "inc"),
    ("corporation", "corp"),
    ("corp", "corp"),
    ("company", "co"),
    ("co", "co"),
    ("plc", "plc"),
    ("aktiengesellschaft", "ag"),
    ("ag", "ag"),
    ("anonim sirketi", "as"),
    ("as", "as"),
    ("sarl", "sarl"),
    ("sa", "sa"),
    ("bv", "bv"),
    ("kk", "kk"),
];

/// Words many unrelated firms share: kept in the name, but not distinctive.
const COMMON_WORDS: &[&str] = &[
    "technology",
    "technologies",
    "tech",
    "trading",
    "trade",
    "industrial",
    "industries",
    "industry",
    "international",
    "intl",
    "group",
    "holding",
    "holdings",
    "import",
    "export",
    "imp",
    "exp",
    "new",
    "material",
    "materials",
    "science",
    "sciences",
    "electronic",
    "electronics",
    "development",
    "global",
    "logistics",
    "supply",
    "services",
    "service",
    "enterprise",
    "enterprises",
    "manufacturing",
    "products",
    "the",
    "and",
    "und",
    "et",
    "of",
    "keji",
    "maoyi",
    "shiye",
    "guoji",
    "jituan",
    "youxian",
    "gongsi",
    "ke",
    "ji",
    "mao",
    "yi",
    // Places that name many firms.
    "china",
    "shenzhen",
    "shanghai",
    "beijing",
    "guangzhou",
    "jiangsu",
    "zhejiang",
    "hongkong",
    "baotou",
    "ganzhou",
    "xiamen",
    "tianjin",
    "ningbo",
    "suzhou",
    "shen",
    "zhen",
    "shang",
    "hai",
    "bei",
    "jing",
    "guang",
    "zhou",
    "jiang",
    "su",
    "zhe",
    "moscow",
    "dubai",
    "singapore",
    "usa",
    "us",
    "europe",
    "asia",
];

/// The name's keys (see the module's description): the look-alikes' key,
/// and for a name with letters outside ASCII its transliteration's too.
pub fn name_keys(s: &str) -> Vec<NameKey> {
    let exact = exact_of(s);
    let mut keys = vec![key_of(&fold(s), exact.clone())];
    let mut add = |k: NameKey| {
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    if let Some(t) = transliterated(s) {
        add(key_of(&t, exact.clone()));
    }
    // Umlauts as German writes them without (`Kühnel` is `Kuehnel`).
    if s.contains(['ä', 'ö', 'ü', 'Ä', 'Ö', 'Ü', 'ß']) {
        let mut expanded = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            match c {
                'ä' => expanded.push_str("ae"),
                'ö' => expanded.push_str("oe"),
                'ü' => expanded.push_str("ue"),
                'Ä' => expanded.push_str("Ae"),
                'Ö' => expanded.push_str("Oe"),
                'Ü' => expanded.push_str("Ue"),
                'ß' => expanded.push_str("ss"),
                c => expanded.push(c),
            }
        }
        add(key_of(&fold(&expanded), exact.clone()));
    }
    // Words joined by a hyphen, as one word too (`Aero-Tech` is `Aerotech`).
    if s.contains('-') {
        add(key_of(&fold(&s.replace('-', "")), exact));
    }
    keys
}

/// Legal forms written in their own script, as [`exact_of`] leaves them:
/// a word on its own, or the end of a Chinese name.
const NATIVE_FORMS: &[&str] = &[
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "有限會社",
    "株式会社",
    "公司",
    "ооо",
    "оао",
    "зао",
    "пао",
];

/// The name after lossless steps alone: NFKC (width), lower case, dots and
/// apostrophes dropped inside words, anything else not a letter or digit a
/// space; the legal form, in either script, set aside.
fn exact_of(s: &str) -> String {
    let lower: String = s.nfkc().flat_map(char::to_lowercase).collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in lower.chars() {
        match c {
            '.' | '\'' | '\u{2019}' => {}
            c if c.is_alphanumeric() => word.push(c),
            _ if !word.is_empty() => words.push(std::mem::take(&mut word)),
            _ => {}
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // Native forms: a word of its own (`ООО`), or a Chinese name's end.
    words.retain(|w| !NATIVE_FORMS.contains(&w.as_str()));
    if let Some(last) = words.last_mut()
        && let Some(form) = NATIVE_FORMS
            .iter()
            .find(|f| last.ends_with(*f) && last.len() > f.len())
    {
        last.truncate(last.len() - form.len());
    }
    // A legal form is found by its spelling folded as the forms' table is
    // (`Beschränkter`, `A.Ş.`): one form, however written. The other words
    // keep their own spelling.
    let plain: Vec<String> = words
        .iter()
        .map(|w| fold(w).split_whitespace().collect())
        .collect();
    let (start, end, _) = legal_form_span(&plain);
    words[start..words.len() - end].join(" ")
}

/// How many declared names [`name_keys_cached`] keeps.
const CACHED_NAMES: usize = 4096;

type NameCache = std::sync::Mutex<std::collections::HashMap<Box<str>, std::sync::Arc<[NameKey]>>>;

static NAME_CACHE: std::sync::LazyLock<NameCache> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(Default::default()));

/// [`name_keys`] through a bounded cache shared by the verify stage's
/// threads: the same exporters, consignees and end users come back all
/// day, and their keys cost about a third of a declaration's parse.
///
/// Design: bounded; when full it is emptied and fills again, so a flood
/// of invented names costs memory no more than `CACHED_NAMES` entries.
pub fn name_keys_cached(s: &str) -> std::sync::Arc<[NameKey]> {
    use std::sync::Arc;
    let cache = &*NAME_CACHE;
    if let Ok(c) = cache.lock()
        && let Some(k) = c.get(s)
    {
        return k.clone();
    }
    let keys: Arc<[NameKey]> = name_keys(s).into();
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CACHED_NAMES {
            c.clear();
        }
        c.insert(s.into(), keys.clone());
    }
    keys
}

/// The look-alikes' key of a name alone.
pub fn name_key(s: &str) -> NameKey {
    key_of(&fold(s), exact_of(s))
}

fn key_of(folded: &str, exact: String) -> NameKey {
    let mut words: Vec<String> = folded.split_whitespace().map(str::to_owned).collect();
    let form = take_legal_form(&mut words);
    let written: String = words
        .iter()
        .filter(|w| !COMMON.contains(w.as_str()))
        .map(String::as_str)
        .collect();
    words.sort();
    let distinctive = words
        .iter()
        .filter(|w| !COMMON.contains(w.as_str()))
        .map(String::as_str)
        .collect();
    NameKey {
        words,
        form,
        distinctive,
        written,
        exact,
    }
}

/// An identifier as the list holds it: NFKC (width), upper case, letters
/// and digits only (`US DE 0666` and `us-de-0666` are `USDE0666`); a
/// look-alike letter makes another id ([`id_look`]). (A license binds a
/// party by its exact [`crate::policy::normalize_id`].)
pub fn id_key(s: &str) -> String {
    s.nfkc()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// An id's look-alikes folded (TR39): how the list finds an id written
/// with look-alike letters (`US-DЕ-0666` with a Cyrillic `Е`). Such a hit is
/// not the listed id: it holds.
pub fn id_look(key: &str) -> String {
    skeleton(key)
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// The characters of a Chinese unified social credit code (GB 32100-2015):
/// digits and capitals without I, O, S, V and Z, each worth its place.
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// The weights of its first seventeen characters.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Whether `key` (an [`id_key`]) is a Chinese unified social credit code
/// with a right check digit: `None` when it is not shaped as one (18
/// characters of its alphabet, a registering authority and a kind of
/// entity that exist), else whether its 18th character checks.
pub fn uscc_checks(key: &str) -> Option<bool> {
    let b = key.as_bytes();
    if b.len() != 18 || !b.iter().all(|c| USCC_CHARS.contains(c)) {
        return None;
    }
    // Registering authorities and the kinds of entity each registers.
    let kinds: &[u8] = match b[0] {
        b'1' => b"129",
        b'2' => b"19",
        b'3' => b"12345",
        b'4' => b"19",
        b'5' => b"1239",
        b'6' => b"129",
        b'7' => b"129",
        b'8' => b"19",
        b'9' => b"123",
        b'A' => b"19",
        b'N' => b"12349",
        b'Y' => b"1",
        _ => return None,
    };
    if !kinds.contains(&b[1]) {
        return None;
    }
    let value = |c: u8| USCC_CHARS.iter().position(|&x| x == c).unwrap_or(0) as u32;
    let sum: u32 = b[..17]
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(&c, w)| value(c) * w)
        .sum();
    let check = (31 - sum % 31) % 31;
    Some(value(b[17]) == check)
}

/// The score of an id one character from a listed one (changed, or two swapped).
pub const ID_ONE_EDIT: f64 = 0.9;

/// Shortest id (characters) compared one edit away: below it, one changed
/// character is another id as often as not.
pub const ID_NEAR_MIN: usize = 6;

/// Whether two ids (as [`id_look`] leaves them) are one character apart:
/// one changed, or two neighbours swapped.
pub fn ids_one_apart(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.len() >= ID_NEAR_MIN && a != b && strsim::osa_distance(a, b) == 1
}

/// How close a declared name comes to a listed one.
pub fn closeness(declared: &NameKey, listed: &NameKey) -> Closeness {
    if listed.words.is_empty() {
        return Closeness::Apart;
    }
    let forms_agree = match (declared.form, listed.form) {
        (Some(a), Some(b)) => a == b || (is_generic_form(a) || is_generic_form(b)),
        _ => true,
    };
    // Design: the listed name itself, through lossless steps alone, and
    // the same legal form: certain. The same words reached otherwise (in
    // another order, through look-alikes or a transliteration, a legal form
    // dropped): as close as a name can be, and still only likely.
    if !listed.exact.is_empty() && declared.exact == listed.exact && declared.form == listed.form {
        return Closeness::Exact;
    }
    if declared.words == listed.words {
        return Closeness::Possible(if forms_agree { SAME_WORDS } else { 0.95 });
    }
    if listed.distinctive.chars().count() < MIN_DISTINCTIVE || declared.distinctive.is_empty() {
        return Closeness::Apart;
    }
    let score =
        strsim::normalized_damerau_levenshtein(&declared.distinctive, &listed.distinctive).max(
            strsim::normalized_damerau_levenshtein(&declared.written, &listed.written),
        );
    if score >= POSSIBLE_AT {
        Closeness::Possible(score)
    } else {
        Closeness::Apart
    }
}

/// `co` is said of every kind of firm: it never tells two apart.
fn is_generic_form(f: &str) -> bool {
    f == "co"
}

/// Removes the legal form at the name's end (or start, as `ООО "…"` is
/// written); returns its one spelling.
fn take_legal_form(words: &mut Vec<String>) -> Option<&'static str> {
    let (start, end, form) = legal_form_span(words);
    words.truncate(words.len() - end);
    words.drain(..start);
    form
}

/// How many words at the name's start and end are its legal form, and the
/// form's one spelling.
fn legal_form_span(words: &[String]) -> (usize, usize, Option<&'static str>) {
    let (mut start, mut end) = (0, 0);
    let mut found = None;
    // Forms can stack (`Co., Ltd.` after `gong si` is split): take what the end holds.
    loop {
        let rest = &words[start..words.len() - end];
        let mut took = false;
        for (spelling, one) in FORMS.iter() {
            let n = spelling.len();
            if rest.len() > n && rest[rest.len() - n..] == spelling[..] {
                end += n;
                found = Some(pick(found, one));
                took = true;
                break;
            }
            if rest.len() > n && rest[..n] == spelling[..] {
                start += n;
                found = Some(pick(found, one));
                took = true;
                break;
            }
        }
        if !took {
            return (start, end, found);
        }
    }
}

/// Of two forms found, the specific one (`ltd` over `co`).
fn pick(had: Option<&'static str>, new: &'static str) -> &'static str {
    match had {
        Some(h) if !is_generic_form(h) => h,
        _ => new,
    }
}

/// A name folded for comparison: look-alikes folded (lower case first, so
/// `I` and `i` meet), what is left of other scripts transliterated, dots
/// and apostrophes gone inside words, anything else not a letter or digit
/// a space.
fn fold(s: &str) -> String {
    let lower: String = s.nfkc().flat_map(char::to_lowercase).collect();
    // The skeleton is decomposed: accents come out as combining marks, dropped here.
    let skel: String = skeleton(&lower)
        .chars()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    finish(&skel)
}

/// A name in another script transliterated whole, before any look-alike
/// folding: `Ростек` is `rostek`, where the look-alikes would make it
/// `poctek`. Only for names with letters outside ASCII.
fn transliterated(s: &str) -> Option<String> {
    if s.is_ascii() {
        return None;
    }
    let bare: String = s
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    Some(finish(&bare))
}

/// Transliterates what is not ASCII, then folds ASCII look-alikes in lower case.
fn finish(s: &str) -> String {
    let latin = if s.is_ascii() {
        std::borrow::Cow::Borrowed(s)
    } else {
        // Design: pinyin syllables come apart (`深圳` → `Shen Zhen `); the
        // spaces keep syllables whole for the legal-form table.
        std::borrow::Cow::Owned(deunicode::deunicode_with_tofu(s, " "))
    };
    let lower = latin.to_ascii_lowercase();
    let mut out = String::with_capacity(lower.len());
    for c in skeleton(&lower).chars() {
        match c {
            '.' | '\'' => {}
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_lowercase()),
            _ => out.push(' '),
        }
    }
    out
}

/// The legal forms' spellings as [`fold`] leaves them, longest first.
static FORMS: std::sync::LazyLock<Vec<(Vec<String>, &'static str)>> =
    std::sync::LazyLock::new(|| {
        LEGAL_FORMS
            .iter()
            .map(|(spelling, one)| {
                (
                    fold(spelling)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect(),
                    *one,
                )
            })
            .collect()
    });

/// The common words as [`fold`] leaves them.
static COMMON: std::sync::LazyLock<std::collections::HashSet<String>> =
    std::sync::LazyLock::new(|| {
        COMMON_WORDS
            .iter()
            .map(|w| fold(w).trim().to_owned())
            .collect()
    });

/// The TR39 skeleton of `s` (look-alikes folded, decomposed).
///
/// Design: names and ids are nearly always ASCII, and the skeleton of an
/// ASCII string whose characters' skeletons are all ASCII is those joined
/// (NFD leaves ASCII as it is): a table lookup instead of two
/// normalisations and a search of the confusables table per character.
pub(crate) fn skeleton(s: &str) -> String {
    let table = &*ASCII_SKELETON;
    if s.is_ascii() && s.bytes().all(|b| table[usize::from(b)].is_some()) {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            out.push_str(table[usize::from(b)].as_deref().unwrap_or_default());
        }
        out
    } else {
        unicode_security::confusable_detection::skeleton(s).collect()
    }
}

/// Each ASCII character's TR39 skeleton, where that is ASCII too.
static ASCII_SKELETON: std::sync::LazyLock<Vec<Option<String>>> = std::sync::LazyLock::new(|| {
    (0u8..128)
        .map(|b| {
            let one: String = unicode_security::confusable_detection::skeleton(
                char::from(b).encode_utf8(&mut [0; 4]),
            )
            .collect();
            one.is_ascii().then_some(one)
        })
        .collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keys_are_the_keys_and_the_cache_stays_bounded() {
        for name in [
            "Shadow Defense Systems, L.L.C.",
            "Шадоу Дефенс Системс ООО",
            "深圳影子防务有限公司",
            "SHАDOW DЕFENSE SYSTEMS LLC",
        ] {
            assert_eq!(&*name_keys_cached(name), name_keys(name).as_slice());
            // The second answer comes from the cache and is the same.
            assert_eq!(&*name_keys_cached(name), name_keys(name).as_slice());
        }
        for n in 0..CACHED_NAMES + 100 {
            name_keys_cached(&format!("Invented Trading {n} GmbH"));
        }
        let held = NAME_CACHE.lock().map(|c| c.len()).unwrap_or(usize::MAX);
        assert!(held <= CACHED_NAMES, "{held} names held");
        assert_eq!(
            &*name_keys_cached("Invented Trading 7 GmbH"),
            name_keys("Invented Trading 7 GmbH").as_slice()
        );
    }

    #[test]
    fn the_ascii_skeleton_table_agrees_with_tr39() {
        use unicode_security::confusable_detection::skeleton as tr39;
        // Only `%` (to `°/₀`) leaves ASCII; a string with one takes the long way.
        let outside: Vec<u8> = (0u8..128)
            .filter(|b| ASCII_SKELETON[usize::from(*b)].is_none())
            .collect();
        assert_eq!(outside, b"%");
        assert_eq!(skeleton("10%"), tr39("10%").collect::<String>());
        // And whole strings agree, including the look-alikes TR39 folds in ASCII.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let s: String = (0..n % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from((x % 128) as u8)
                })
                .collect();
            assert_eq!(skeleton(&s), tr39(&s).collect::<String>(), "{s:?}");
        }
        for s in ["rn", "m", "0O1lI|", "ACME Rare Earth Trading Co., Ltd."] {
            assert_eq!(skeleton(s), tr39(s).collect::<String>());
        }
    }

    #[test]
    fn legal_forms_punctuation_case_and_order_fold_to_one_key() {
        let listed = name_key("Shadow Defense Systems LLC");
        // Lossless: case, width, spacing, punctuation, the legal form's spelling.
        for same in [
            "Shadow Defense Systems, L.L.C.",
            "SHADOW DEFENSE SYSTEMS LIMITED LIABILITY COMPANY",
            "shadow   defense systems llc",
            "\u{FF33}hadow Defense Systems LLC",
        ] {
            assert_eq!(
                closeness(&name_key(same), &listed),
                Closeness::Exact,
                "{same}"
            );
        }
        // Lossy: words moved, a legal form dropped, a look-alike letter,
        // an accent: the same words, likely, never certain.
        for likely in [
            "Defense Systems Shadow LLC",
            "Shadow Defense Systems",
            "SHADOW DEFENSE SYS\u{0422}EMS LLC",
            "Shadow Défense Systems LLC",
        ] {
            assert_eq!(
                closeness(&name_key(likely), &listed),
                Closeness::Possible(SAME_WORDS),
                "{likely}"
            );
        }
        assert!(matches!(
            closeness(&name_key("Shadow Defense Systems GmbH"), &listed),
            Closeness::Possible(_)
        ));
        assert_eq!(name_key("深圳华为技术有限公司").form, Some("ltd"));
        assert_eq!(id_key("US DE 0666"), id_key("US-DE-0666"));
        assert_ne!(id_key("us-d\u{0415}-0666"), id_key("US-DE-0666"));
        assert_eq!(
            id_look(&id_key("us-d\u{0415}-0666")),
            id_look(&id_key("US-DE-0666"))
        );
        assert_ne!(id_key("US-DE-0667"), id_key("US-DE-0666"));
    }

    #[test]
    fn common_words_alone_do_not_match() {
        let listed = name_key("Shenzhen Hongda Technology Co., Ltd.");
        assert_eq!(
            closeness(&name_key("Shenzhen Huaxing Technology Co., Ltd."), &listed),
            Closeness::Apart
        );
        assert!(matches!(
            closeness(
                &name_key("Shenzhen Hongda Technologies Company Limited"),
                &listed
            ),
            Closeness::Possible(_) | Closeness::Exact
        ));
    }

    /// Names that take a lossy step to meet a listed one are never refused
    /// outright: two people, two firms, one only likely.
    #[test]
    fn a_lossy_likeness_holds_and_never_refuses() {
        for (declared, listed) in [
            // Words sorted: two people become one.
            ("Friedrich Hans", "Hans Friedrich"),
            ("SALMAN BIN MUHAMMAD AL-RAWI", "MUHAMMAD BIN SALMAN AL-RAWI"),
            // Pinyin is lossy: other characters, the same syllables.
            ("高石早苗", "高市早苗"),
            // 稀土 (rare earth) and 稀途: another firm.
            ("东莞市稀土贸易有限公司", "东莞市稀途贸易有限公司"),
        ] {
            let declared_keys = name_keys(declared);
            let listed_keys = name_keys(listed);
            for d in &declared_keys {
                for l in &listed_keys {
                    assert_ne!(closeness(d, l), Closeness::Exact, "{declared} / {listed}");
                }
            }
        }
        // The listed name itself, in its own script, is certain.
        let listed = name_keys("东莞市稀途贸易有限公司");
        assert_eq!(
            closeness(&name_keys("东莞市稀途贸易有限公司")[0], &listed[0]),
            Closeness::Exact
        );
        let rostek = name_keys("ООО Ростек Магнит Трейдинг");
        assert!(
            name_keys("ооо  РОСТЕК магнит трейдинг")
                .iter()
                .any(|d| rostek.iter().any(|l| closeness(d, l) == Closeness::Exact))
        );
    }

    #[test]
    fn unified_social_credit_codes_are_checked_when_shaped_as_one() {
        // Published examples of GB 32100-2015 codes.
        for good in [
            "91350100M000100Y43",
            "91110000802100433B",
            "91440300708461136T",
        ] {
            assert_eq!(uscc_checks(&id_key(good)), Some(true), "{good}");
        }
        // One character changed, two swapped: the check digit catches both.
        assert_eq!(uscc_checks("91350100M000100Y44"), Some(false));
        assert_eq!(uscc_checks("91350100M000010Y43"), Some(false));
        // Not shaped as one: other lengths, letters it never uses, a kind
        // of registration that does not exist.
        for other in [
            "91320700MA1X0001",
            "DE-HRB-10001",
            "91350100M000100I43",
            "B1350100M000100Y43",
        ] {
            assert_eq!(uscc_checks(&id_key(other)), None, "{other}");
        }
    }

    #[test]
    fn ids_one_character_apart() {
        assert!(ids_one_apart("USDE0666", "USDE0667"));
        assert!(ids_one_apart("USDE0666", "USDE6066"));
        assert!(!ids_one_apart("USDE0666", "USDE0666"));
        assert!(!ids_one_apart("USDE0666", "USDE0777"));
        assert!(
            !ids_one_apart("KP0001", "KP00010"),
            "another length is another id"
        );
        assert!(!ids_one_apart("KP001", "KP002"), "too short to tell");
    }

    /// Spelling variants the customs set found missed: umlauts written
    /// out, `und` for `&`, words joined or hyphenated, a Turkish legal form
    /// written out.
    #[test]
    fn spelling_variants_meet_the_listed_name() {
        let flagged = |declared: &str, listed: &str| {
            let l = name_keys(listed);
            name_keys(declared)
                .iter()
                .any(|d| l.iter().any(|k| closeness(d, k) != Closeness::Apart))
        };
        for (declared, listed) in [
            ("Kuehnel und Soehne", "Kühnel & Söhne"),
            ("Aero-Tech Limited", "Aerotech Ltd"),
            ("Aerotech Ltd", "Aero-Tech Limited"),
            (
                "Anatolia Kinetic Systems Anonim Sirketi",
                "Anatolia Kinetic Systems A.Ş.",
            ),
        ] {
            assert!(flagged(declared, listed), "{declared} / {listed}");
        }
        // The Turkish legal form written out is the same form: certain.
        assert_eq!(
            closeness(
                &name_key("Anatolia Kinetic Systems Anonim Sirketi"),
                &name_key("Anatolia Kinetic Systems A.Ş.")
            ),
            Closeness::Exact
        );
    }
}
