//! A name as the screen compares it: its words folded to lower-case ASCII,
//! each tagged with what it is to the name (a plain word, a word many
//! firms share, a title, a particle, a patronymic, a number) and how it
//! sounds; its legal form in one spelling; and the name after lossless
//! steps alone, which an outright refusal needs.
//!
//! Scripts: Latin letters lose their accents; another alphabet (Cyrillic,
//! Greek, Georgian, Armenian…) is transliterated letter by letter
//! (`any_ascii`); a word mixing Latin letters with look-alikes from another
//! script is folded to its look-alikes instead (Unicode TR39 skeleton), as
//! no one writes a real name so. Chinese characters become one pinyin
//! syllable each, and Korean syllables one word each; the Chinese
//! characters themselves are kept for comparing with a name in Chinese.
//! Arabic script writes few vowels: its words are compared with a Latin
//! name's consonants.

use super::words;
use unicode_normalization::UnicodeNormalization;

/// What a word is to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// A word that tells this name from others.
    Plain,
    /// A word many unrelated names share (`trading`, `shenzhen`).
    Common,
    /// A title before a person's name, or a vessel's prefix (`dr`, `mv`).
    Title,
    /// A particle (`bin`, `al`, `van`).
    Particle,
    /// A patronymic (`vladimirovich`).
    Patronymic,
    /// A number, in digits (`ii`, `second`, `2` are all `2`).
    Number,
}

/// The script a name was written in, as far as comparing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// Latin letters, with or without accents.
    Latin,
    /// Another alphabet, transliterated letter by letter.
    Alphabet,
    /// Chinese characters, as pinyin syllables.
    Han,
    /// Korean syllables, one word each.
    Hangul,
    /// Japanese kana.
    Kana,
    /// Arabic script: consonants.
    Abjad,
}

/// One word of a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token {
    /// The word, folded (lower-case ASCII).
    pub text: Box<str>,
    /// What it is to the name.
    pub part: Part,
    /// Its Double Metaphone codes (primary, alternate), hashed; 0 where a
    /// code says too little (under two letters).
    pub sound: [u64; 2],
    /// Its [`spelling_fold`], hashed: compared for every pair of words
    /// scored, so made once.
    pub spelling: u64,
    /// Its place in a contrast set ([`words::CONTRASTS`]): the set's number
    /// and the meaning; `None` outside them.
    pub contrast: Option<(u8, u8)>,
}

/// A name as the screen compares it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameKey {
    /// The name after lossless steps alone (case, width, spacing,
    /// punctuation; the legal form set aside), words in the order written,
    /// in its own script: what an outright refusal needs to match.
    pub exact: String,
    /// The legal form, in one spelling (`llc`, `ltd`, `gmbh`…), if any.
    pub form: Option<&'static str>,
    /// The words, in the order written, without the legal form.
    pub tokens: Vec<Token>,
    /// The script it was written in.
    pub script: Option<Script>,
    /// For a name in Chinese characters or Korean syllables: the
    /// characters that tell it from others (places, shared words, numbers
    /// and the legal form set aside), compared as characters with a name
    /// in the same script.
    pub native: Option<String>,
}

impl NameKey {
    /// The script, Latin when unknown.
    pub fn script(&self) -> Script {
        self.script.unwrap_or(Script::Latin)
    }
}

/// A listed name's key: the name as written (transliterated where it is in
/// another script).
pub fn listed_key(s: &str) -> NameKey {
    build(s, false)
}

/// A declared name's keys: as [`listed_key`], and for a name with letters
/// outside ASCII also all of it folded to its look-alikes (TR39), so a word
/// written wholly in look-alikes from another script (`ВАТ` for `BAT`) is
/// found too.
pub fn declared_keys(s: &str) -> Vec<NameKey> {
    let first = build(s, false);
    if s.is_ascii() {
        return vec![first];
    }
    let look = build(s, true);
    if look.tokens == first.tokens {
        vec![first]
    } else {
        vec![first, look]
    }
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '〇')
}

fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7AF}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}')
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{31F0}'..='\u{31FF}')
}

fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// Whether `c` is a Latin letter, accented or not.
fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (c.is_alphabetic()
            && std::iter::once(c)
                .nfd()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic()))
        || matches!(
            c,
            'ß' | 'æ' | 'Æ' | 'ø' | 'Ø' | 'ł' | 'Ł' | 'đ' | 'Đ' | 'ı' | 'œ' | 'Œ' | 'þ' | 'ð'
        )
}

/// The script a name is written in.
pub fn script_of(s: &str) -> Script {
    let (mut han, mut hangul, mut kana, mut arabic, mut other) = (0, 0, 0, 0, 0);
    for c in s.chars().filter(|c| c.is_alphabetic()) {
        if is_kana(c) {
            kana += 1;
        } else if is_hangul(c) {
            hangul += 1;
        } else if is_han(c) {
            han += 1;
        } else if is_arabic(c) {
            arabic += 1;
        } else if !is_latin(c) {
            other += 1;
        }
    }
    if kana > 0 {
        Script::Kana
    } else if hangul > 0 {
        Script::Hangul
    } else if han > 0 {
        Script::Han
    } else if arabic > 0 {
        Script::Abjad
    } else if other > 0 {
        Script::Alphabet
    } else {
        Script::Latin
    }
}

fn build(s: &str, all_look_alikes: bool) -> NameKey {
    let nfkc: String = s.nfkc().collect();
    let script = script_of(&nfkc);
    let exact = exact_of(&nfkc);
    let (native_form, rest) = take_native_form(&nfkc);
    // Each word, and its part when a syllable (Chinese, Korean) fixes it.
    let mut words: Vec<(String, Option<Part>)> = Vec::new();
    let mut native = String::new();
    for segment in segments(&rest) {
        match segment {
            Segment::Han(run) => {
                // Traditional characters as simplified: one name, two forms.
                let run = fast2s::convert(&run);
                for piece in han_words(&run) {
                    if piece.part == Part::Plain {
                        native.push_str(&piece.text);
                    }
                    if piece.part == Part::Number {
                        words.push((piece.text, Some(Part::Number)));
                    } else if let Some(latin) = piece.latin {
                        // A place or shared word as Latin names write it.
                        for w in latin.split_whitespace() {
                            words.push((w.to_owned(), Some(Part::Common)));
                        }
                    } else {
                        for c in piece.text.chars() {
                            let syllable: String = any_ascii::any_ascii_char(c)
                                .chars()
                                .filter(char::is_ascii_alphanumeric)
                                .map(|c| c.to_ascii_lowercase())
                                .collect();
                            if !syllable.is_empty() {
                                words.push((syllable, Some(piece.part)));
                            }
                        }
                    }
                }
            }
            Segment::Hangul(run) => {
                for c in run.chars() {
                    native.push(c);
                    words.push((hangul_syllable(c), Some(Part::Plain)));
                }
            }
            Segment::Word(w) => {
                for piece in fold_word(&w, script, all_look_alikes) {
                    words.push((piece, None));
                }
            }
        }
    }
    // A Chinese name whose every character is shared keeps them all.
    if script == Script::Han && native.is_empty() {
        native = fast2s::convert(&rest)
            .chars()
            .filter(|c| is_han(*c))
            .collect();
    }
    // Latin legal forms, unless the name's words came from Chinese.
    let texts: Vec<String> = words.iter().map(|(w, _)| w.clone()).collect();
    let (start, end, form) = if script == Script::Han {
        (0, 0, None)
    } else {
        legal_form_span(&texts)
    };
    let form = native_form.or(form);
    let kept: Vec<(String, Option<Part>)> = words.drain(start..words.len() - end).collect();
    let tokens = tag(kept, script);
    NameKey {
        exact,
        form,
        tokens,
        script: Some(script),
        native: matches!(script, Script::Han | Script::Hangul).then_some(native),
    }
}

/// A name cut into what is transliterated apart.
enum Segment {
    Han(String),
    Hangul(String),
    Word(String),
}

/// Splits a name at spaces and punctuation (a hyphen too; dots and
/// apostrophes inside words go), and Chinese and Korean runs apart.
fn segments(s: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut han = String::new();
    let mut hangul = String::new();
    let flush =
        |out: &mut Vec<Segment>, word: &mut String, han: &mut String, hangul: &mut String| {
            if !word.is_empty() {
                out.push(Segment::Word(std::mem::take(word)));
            }
            if !han.is_empty() {
                out.push(Segment::Han(std::mem::take(han)));
            }
            if !hangul.is_empty() {
                out.push(Segment::Hangul(std::mem::take(hangul)));
            }
        };
    for c in s.chars() {
        if is_han(c) && !is_kana(c) {
            if !word.is_empty() || !hangul.is_empty() {
                flush(&mut out, &mut word, &mut String::new(), &mut hangul);
            }
            han.push(c);
        } else if is_hangul(c) {
            if !word.is_empty() || !han.is_empty() {
                flush(&mut out, &mut word, &mut han, &mut String::new());
            }
            hangul.push(c);
        } else if matches!(
            c,
            '.' | '\''
                | '\u{2019}'
                | '\u{02BC}'
                | 'ʻ'
                | 'ʿ'
                | 'ʾ'
                | '`'
                | '\u{200C}'
                | '\u{200D}'
                | 'ー'
        ) {
            // Inside a word: dots, apostrophes, joiners, the kana long mark.
        } else if c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c) {
            if !han.is_empty() || !hangul.is_empty() {
                flush(&mut out, &mut String::new(), &mut han, &mut hangul);
            }
            word.push(c);
        } else {
            flush(&mut out, &mut word, &mut han, &mut hangul);
        }
    }
    flush(&mut out, &mut word, &mut han, &mut hangul);
    out
}

/// An ASCII word with its look-alikes undone: a lower-case `l` among
/// capitals is an `I` (`DYNAMlCS`), a `0` between letters an `O` (`B0EING`).
/// No one writes a real name so.
fn ascii_disguise(w: &str) -> std::borrow::Cow<'_, str> {
    let b = w.as_bytes();
    if !w.is_ascii() || !b.iter().any(u8::is_ascii_alphabetic) {
        return w.into();
    }
    let capitals = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    let only_l_lower = b.iter().all(|c| !c.is_ascii_lowercase() || *c == b'l');
    let l_for_i = capitals >= 2 && only_l_lower && b.contains(&b'l');
    let zero_for_o = (1..b.len().saturating_sub(1))
        .any(|i| b[i] == b'0' && b[i - 1].is_ascii_alphabetic() && b[i + 1].is_ascii_alphabetic());
    if !l_for_i && !zero_for_o {
        return w.into();
    }
    let mut out = b.to_vec();
    for i in 0..out.len() {
        if l_for_i && out[i] == b'l' {
            out[i] = b'I';
        }
        let between = i > 0
            && i + 1 < b.len()
            && b[i - 1].is_ascii_alphabetic()
            && b[i + 1].is_ascii_alphabetic();
        if zero_for_o && b[i] == b'0' && between {
            out[i] = b'O';
        }
    }
    String::from_utf8(out).map_or_else(|_| w.into(), Into::into)
}

/// A word in folded form: one or more ASCII words (Kana may come out as
/// several).
fn fold_word(w: &str, script: Script, all_look_alikes: bool) -> Vec<String> {
    let w = ascii_disguise(w);
    let lower: String = w.chars().flat_map(char::to_lowercase).collect();
    let has_latin = lower.chars().any(is_latin);
    let has_other = lower.chars().any(|c| c.is_alphabetic() && !is_latin(c));
    let latin: String = if all_look_alikes || (has_latin && has_other) {
        // Look-alikes from another script among Latin letters: a disguise.
        // TR39 writes `m` as `rn`; the word keeps its `m`.
        super::skeleton(&lower)
            .chars()
            .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
            .collect::<String>()
            .replace("rn", "m")
    } else if script == Script::Abjad && has_other {
        abjad_word(&lower)
    } else if lower.is_ascii() {
        lower
    } else {
        any_ascii::any_ascii(&lower)
    };
    let mut latin = latin.to_ascii_lowercase();
    if script == Script::Kana {
        // Long vowels as one (`トウヨウ`, `トーヨー` are both `toyo`).
        latin = latin
            .replace("ou", "o")
            .replace("uu", "u")
            .replace("ii", "i");
    }
    let mut out = Vec::new();
    for piece in latin.split(|c: char| !c.is_ascii_alphanumeric()) {
        if piece.is_empty() {
            continue;
        }
        // Digits stay digits; among letters, the digits that look like
        // letters are those letters (TR39: `0` is `o`, `1` is `l`).
        if piece.bytes().all(|b| b.is_ascii_digit()) {
            out.push(piece.to_owned());
        } else {
            out.push(piece.replace('0', "o").replace('1', "l"));
        }
    }
    out
}

/// An Arabic word transliterated: the article split off (`الراوي` →
/// `al rawi`'s consonants), the feminine ending and hamza seats dropped.
fn abjad_word(w: &str) -> String {
    let (article, rest) = match w.strip_prefix("ال") {
        Some(r) if r.chars().count() >= 2 => ("al ", r),
        _ => ("", w),
    };
    // The feminine ending, however written (`فاطمة`, `فاطمه`), and hamza.
    let mut bare: String = rest.chars().filter(|&c| c != 'ة' && c != 'ء').collect();
    if bare.chars().count() >= 3 && bare.ends_with('ه') {
        bare.pop();
    }
    let latin = any_ascii::any_ascii(&bare).to_ascii_lowercase();
    let latin: String = latin
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    // `بن` (son of) and `أبو` (father of) as Latin writes them.
    let latin = match latin.as_str() {
        "bn" => "bin".to_owned(),
        "bw" => "abu".to_owned(),
        _ => latin,
    };
    format!("{article}{latin}")
}

/// Chinese numerals, and their values.
const HAN_DIGITS: &[(char, u32)] = &[
    ('〇', 0),
    ('零', 0),
    ('一', 1),
    ('二', 2),
    ('两', 2),
    ('三', 3),
    ('四', 4),
    ('五', 5),
    ('六', 6),
    ('七', 7),
    ('八', 8),
    ('九', 9),
    ('十', 10),
    ('百', 100),
    ('千', 1000),
];

/// The value of a run of Chinese numerals (`十四` is 14, `二十` 20).
fn han_number(run: &[char]) -> Option<u32> {
    let (mut total, mut digit) = (0u32, None::<u32>);
    for c in run {
        let v = HAN_DIGITS.iter().find(|(d, _)| d == c)?.1;
        if v >= 10 {
            total = total.checked_add(digit.unwrap_or(1).checked_mul(v)?)?;
            digit = None;
        } else {
            // Digits written one by one (`一四` as 14) as well.
            digit = Some(digit.map_or(Some(v), |d| d.checked_mul(10)?.checked_add(v))?);
        }
    }
    total.checked_add(digit.unwrap_or(0))
}

/// A Korean syllable romanised as the Revised Romanization ends one: a
/// final ㄱ, ㄷ, ㅂ as `k`, `t`, `p` (`역` is `yeok`).
fn hangul_syllable(c: char) -> String {
    let mut s = any_ascii::any_ascii_char(c).to_ascii_lowercase();
    let last = s.pop();
    match last {
        Some('g') if !s.ends_with('n') => s.push('k'),
        Some('d') => s.push('t'),
        Some('b') => s.push('p'),
        Some(c) => s.push(c),
        None => {}
    }
    s
}

/// A piece of a Chinese name: its characters, what it is to the name, and
/// how Latin names write it when it is a place or a shared word.
struct HanPiece {
    text: String,
    part: Part,
    latin: Option<&'static str>,
}

/// A Chinese run cut into what each part is to the name: places at its
/// start (with 市, 省, 区 or 县) and shared words are common; numerals
/// after 第 or before 号 a number (its text the digits); the rest plain.
fn han_words(run: &str) -> Vec<HanPiece> {
    let chars: Vec<char> = run.chars().collect();
    // Per character: its part, and the piece it starts (a place, a word).
    let mut parts = vec![Part::Plain; chars.len()];
    let mut starts: Vec<Option<(usize, &'static str)>> = vec![None; chars.len()];
    let mut i = 0;
    // Places at the start, one after another (广东省深圳市).
    'places: loop {
        for (place, latin) in words::HAN_PLACES {
            let p: Vec<char> = place.chars().collect();
            if chars.len() > i + p.len() && chars[i..i + p.len()] == p[..] {
                let mut len = p.len();
                if i + len < chars.len() && words::HAN_PLACE_SUFFIXES.contains(&chars[i + len]) {
                    len += 1;
                }
                parts[i..i + len].fill(Part::Common);
                starts[i] = Some((len, latin));
                i += len;
                continue 'places;
            }
        }
        break;
    }
    for (common, latin) in words::HAN_COMMON {
        let c: Vec<char> = common.chars().collect();
        let mut j = i;
        while j + c.len() <= chars.len() {
            if chars[j..j + c.len()] == c[..]
                && parts[j..j + c.len()].iter().all(|p| *p == Part::Plain)
            {
                parts[j..j + c.len()].fill(Part::Common);
                starts[j] = Some((c.len(), latin));
                j += c.len();
            } else {
                j += 1;
            }
        }
    }
    let is_numeral = |c: &char| HAN_DIGITS.iter().any(|(d, _)| d == c);
    let mut out: Vec<HanPiece> = Vec::new();
    let mut j = 0;
    while j < chars.len() {
        if let Some((len, latin)) = starts[j] {
            out.push(HanPiece {
                text: chars[j..j + len].iter().collect(),
                part: Part::Common,
                latin: Some(latin),
            });
            j += len;
            continue;
        }
        // Numerals after 第 or before 号: a number.
        let end = (j..chars.len())
            .find(|&k| !is_numeral(&chars[k]))
            .unwrap_or(chars.len());
        let counted = end > j && ((j > 0 && chars[j - 1] == '第') || chars.get(end) == Some(&'号'));
        if counted && let Some(n) = han_number(&chars[j..end]) {
            out.push(HanPiece {
                text: n.to_string(),
                part: Part::Number,
                latin: None,
            });
            j = end;
            continue;
        }
        match out.last_mut() {
            Some(piece) if piece.part == parts[j] && piece.latin.is_none() => {
                piece.text.push(chars[j]);
            }
            _ => out.push(HanPiece {
                text: chars[j].to_string(),
                part: parts[j],
                latin: None,
            }),
        }
        j += 1;
    }
    out
}

/// Tags each word with its part and sound.
fn tag(words: Vec<(String, Option<Part>)>, script: Script) -> Vec<Token> {
    let n = words.len();
    let mut leading = true;
    words
        .into_iter()
        .enumerate()
        .map(|(i, (w, fixed))| {
            let part = if let Some(part) = fixed {
                part
            } else if let Some(d) = words::number_of(&w) {
                leading = false;
                return token(d.to_owned(), Part::Number);
            } else if words::is_common(&w) {
                Part::Common
            } else if leading && i + 1 < n && words::is_in(words::TITLES, &w) {
                Part::Title
            } else if words::is_in(words::PARTICLES, &w) && n > 1 && script != Script::Han {
                Part::Particle
            } else if words::is_patronymic(&w) {
                Part::Patronymic
            } else {
                Part::Plain
            };
            if part != Part::Title {
                leading = false;
            }
            token(w, part)
        })
        .collect()
}

/// How many words' tokens a thread keeps ([`token`]).
const TOKENS_KEPT: usize = 1 << 12;

thread_local! {
    /// Tokens made on this thread lately: a list's names repeat their
    /// words (an entity's aliases, legal forms, `Trading`), and a token's
    /// sounds and spelling are most of a name's key.
    static TOKENS: std::cell::RefCell<std::collections::HashMap<(String, Part), Token, foldhash::fast::RandomState>> =
        std::cell::RefCell::default();
}

/// A word's token, made once a while on each thread.
fn token(text: String, part: Part) -> Token {
    let key = (text, part);
    if let Some(t) = TOKENS.with_borrow(|m| m.get(&key).cloned()) {
        return t;
    }
    let t = make_token(key.0.clone(), part);
    TOKENS.with_borrow_mut(|m| {
        if m.len() >= TOKENS_KEPT {
            m.clear();
        }
        m.insert(key, t.clone());
    });
    t
}

fn make_token(text: String, part: Part) -> Token {
    let sound = if part == Part::Number {
        [0, 0]
    } else {
        sounds(&text)
    };
    let spelling = code_hash(&spelling_fold(&text));
    let contrast = words::CONTRASTS.iter().enumerate().find_map(|(n, set)| {
        let (_, meaning) = set.iter().find(|(w, _)| *w == text)?;
        Some((n as u8, *meaning))
    });
    Token {
        text: text.into_boxed_str(),
        part,
        sound,
        spelling,
        contrast,
    }
}

static METAPHONE: std::sync::LazyLock<rphonetic::DoubleMetaphone> =
    std::sync::LazyLock::new(|| rphonetic::DoubleMetaphone::new(Some(32)));

/// A word's Double Metaphone codes (primary, alternate), whole, as hashes;
/// 0 for a code under two letters.
pub fn sounds(word: &str) -> [u64; 2] {
    if word.len() < 2 || !word.bytes().any(|b| b.is_ascii_alphabetic()) {
        return [0, 0];
    }
    let r = METAPHONE.double_metaphone(word);
    [code_hash(&r.primary()), code_hash(&r.alternate())]
}

fn code_hash(code: &str) -> u64 {
    use std::hash::BuildHasher;
    if code.len() < 2 {
        return 0;
    }
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(code) | 1
}

/// A word as transliterations of one name differ: `zh` and `j`, `kh` and
/// `h`, `y` and `i`, `c` and `k`, `x` and `ks`, `ou` and `u`, doubled
/// letters, and a plural's ending (`Kadyrov` is `Kadirov`, `Zhukovets`
/// `Joukovets`, `Supplies` `Supply`).
pub fn spelling_fold(word: &str) -> String {
    // `Northwestern` is `Northwest`.
    let word = ["western", "eastern"]
        .iter()
        .find_map(|e| word.strip_suffix(e).map(|s| (s, e)))
        .filter(|(s, _)| s.ends_with("north") || s.ends_with("south"))
        .map_or(word.to_owned(), |(s, e)| format!("{s}{}", &e[..4]));
    let word = word.as_str();
    let w = if let Some(stem) = word.strip_suffix("ies").filter(|s| s.len() >= 3) {
        format!("{stem}y")
    } else if let Some(stem) = word
        .strip_suffix('s')
        .filter(|s| s.len() >= 3 && !s.ends_with('s') && !s.ends_with('u'))
    {
        stem.to_owned()
    } else {
        word.to_owned()
    };
    let mut w = w;
    for (from, to) in [
        ("sch", "sh"),
        ("tch", "ch"),
        ("zh", "j"),
        ("dj", "j"),
        ("kh", "h"),
        ("ph", "f"),
        ("gh", "g"),
        ("ck", "k"),
        ("q", "k"),
        ("x", "ks"),
        ("w", "v"),
        ("y", "i"),
        ("ou", "u"),
        ("oo", "u"),
        ("ee", "i"),
    ] {
        if w.contains(from) {
            w = w.replace(from, to);
        }
    }
    let chars: Vec<char> = w.chars().collect();
    let mut out = String::with_capacity(w.len());
    for (i, &c) in chars.iter().enumerate() {
        let c = if c == 'c' && chars.get(i + 1) != Some(&'h') {
            'k'
        } else {
            c
        };
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

/// Consonants that transliterations and spellings swap: one sound.
pub fn consonant_class(c: u8) -> u8 {
    match c {
        b'c' | b'q' => b'k',
        b'z' => b's',
        b'd' => b't',
        b'b' => b'p',
        b'w' | b'f' => b'v',
        other => other,
    }
}

/// A word with the Arabic article written joined (`Alameri`, `Alrawi`)
/// without it; `None` for a word that does not start so or is short.
pub fn without_article(word: &str) -> Option<&str> {
    word.strip_prefix("al").filter(|rest| rest.len() >= 4)
}

/// A word's consonants, as Arabic script writes a name: vowels and the
/// letters that also write long vowels (`w`, `y`) dropped, a final `ah`
/// taken as the feminine ending, doubled letters once.
pub fn consonants(word: &str) -> String {
    let w = word.strip_suffix("ah").unwrap_or(word);
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'w') || out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Takes a legal form written in Chinese, Japanese or Korean off the
/// name's end or start (`株式会社ミヤコ`, `(주)한빛`); returns its one
/// spelling and the rest.
fn take_native_form(s: &str) -> (Option<&'static str>, String) {
    let t = s.trim();
    for (form, one) in words::NATIVE_FORMS {
        if let Some(rest) = t.strip_suffix(form).or_else(|| t.strip_prefix(form))
            && !rest.trim().is_empty()
        {
            return (Some(one), rest.to_owned());
        }
    }
    (None, s.to_owned())
}

/// How many words at the name's start and end are its legal form, and the
/// form's one spelling.
pub fn legal_form_span(words: &[String]) -> (usize, usize, Option<&'static str>) {
    let (mut start, mut end) = (0, 0);
    let mut found = None;
    // Forms can stack (`Co., Ltd.`): take what the end holds.
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

/// `co` is said of every kind of firm: it never tells two apart.
pub fn is_generic_form(f: &str) -> bool {
    f == "co"
}

/// Of two forms found, the specific one (`ltd` over `co`).
fn pick(had: Option<&'static str>, new: &'static str) -> &'static str {
    match had {
        Some(h) if !is_generic_form(h) => h,
        _ => new,
    }
}

/// The legal forms' spellings as words, longest first.
static FORMS: std::sync::LazyLock<Vec<(Vec<String>, &'static str)>> =
    std::sync::LazyLock::new(|| {
        let mut forms: Vec<(Vec<String>, &'static str)> = words::LEGAL_FORMS
            .iter()
            .map(|(spelling, one)| {
                (
                    spelling.split_whitespace().map(str::to_owned).collect(),
                    *one,
                )
            })
            .collect();
        // Most words first (`pvt ltd` before `ltd`); the table's order among equals.
        forms.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
        forms
    });

/// The name after lossless steps alone: NFKC (width), lower case, dots and
/// apostrophes dropped inside words, anything else not a letter or digit a
/// space; the legal form, in either script, set aside.
pub fn exact_of(s: &str) -> String {
    // Turkish dotless and dotted i are the same letter in another case.
    let lower: String = s
        .nfkc()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ı' { 'i' } else { c })
        .filter(|&c| c != '\u{307}')
        .collect();
    let (_, lower) = take_native_form(&lower);
    let lower = lower.replace('&', " and ");
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in lower.chars() {
        match c {
            '.' | '\'' | '\u{2019}' | '\u{200C}' | '\u{200D}' => {}
            c if c.is_alphanumeric() => word.push(c),
            _ if !word.is_empty() => words.push(std::mem::take(&mut word)),
            _ => {}
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // `and` in German and French is the same word.
    for w in &mut words {
        if w == "und" || w == "et" {
            *w = "and".to_owned();
        }
    }
    // A legal form is found by its spelling folded (`Beschränkter`, `A.Ş.`):
    // one form, however written. The other words keep their own spelling.
    let plain: Vec<String> = words
        .iter()
        .map(|w| any_ascii::any_ascii(w).to_ascii_lowercase())
        .collect();
    let (start, end, _) = legal_form_span(&plain);
    words[start..words.len() - end].join(" ")
}
