//! Denied-party screening at national scale: `cargo bench --bench screening`.
//!
//! A list of 100,000 invented entities with five aliases each (firms with
//! legal forms, persons, vessels; each with an alias in Cyrillic and one
//! in Chinese characters) written as a policy file and loaded as the
//! daemon loads it; then a declaration's three parties screened against
//! it; then the labelled pairs' figures, so the speed and the quality are
//! read in one run. Prints the load's time and memory and the screening
//! time per declaration.
//!
//! `SCREENING_ENTITIES` sets the list's size (default 100,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use permitgate::policy::Policy;
use permitgate::screening::{self, measure};

/// Tracks live and peak heap bytes, so memory is a figure.
struct Tracking;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static TRACKING: Tracking = Tracking;

const MIB: f64 = 1024.0 * 1024.0;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, m: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % m as u64) as usize
    }
}

const FORMS: &[&str] = &["LLC", "Co., Ltd.", "GmbH", "Inc.", "Limited", "JSC", "FZE"];
const HAN: &str = "华宏达星海金科技贸易稀土磁材新源联合东方长江实业发展精密电子光学";

/// A word of two or three syllables (onset, vowel, coda): the invented
/// names spread as real ones do, few of them a letter or two apart.
fn word(r: &mut Rng) -> String {
    const ONSETS: &[&str] = &[
        "b", "br", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kh", "l", "m", "n", "p", "pr",
        "r", "s", "sh", "st", "t", "tr", "v", "z", "zh", "",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ia", "ou"];
    const CODAS: &[&str] = &["", "n", "r", "l", "s", "k", "m", "ng", "t", "x"];
    let w: String = (0..2 + r.below(2))
        .map(|_| {
            let onset = ONSETS[r.below(ONSETS.len())];
            let vowel = VOWELS[r.below(VOWELS.len())];
            let coda = CODAS[r.below(CODAS.len())];
            format!("{onset}{vowel}{coda}")
        })
        .collect();
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn words(r: &mut Rng, n: usize) -> Vec<String> {
    (0..n).map(|_| word(r)).collect()
}

/// Latin letters written in Cyrillic, as a Russian registry would.
fn cyrillic(s: &str) -> String {
    s.chars()
        .map(|c| match c.to_ascii_lowercase() {
            'a' => 'а',
            'b' => 'б',
            'd' => 'д',
            'e' => 'е',
            'g' => 'г',
            'i' => 'и',
            'k' => 'к',
            'l' => 'л',
            'm' => 'м',
            'n' => 'н',
            'o' => 'о',
            'p' => 'п',
            'r' => 'р',
            's' => 'с',
            't' => 'т',
            'u' => 'у',
            'v' => 'в',
            'z' => 'з',
            _ => c,
        })
        .collect()
}

fn han(r: &mut Rng) -> String {
    let chars: Vec<char> = HAN.chars().collect();
    let mut s: String = (0..3 + r.below(4))
        .map(|_| chars[r.below(chars.len())])
        .collect();
    s.push_str("有限公司");
    s
}

/// One entity's policy table: its name, kind and five aliases.
fn entity(r: &mut Rng, i: usize) -> (String, String) {
    let roll = r.below(20);
    let (kind, name, mut aliases) = if roll < 14 {
        let count = 2 + r.below(3);
        let w = words(r, count);
        let name = format!("{} {}", w.join(" "), FORMS[r.below(FORMS.len())]);
        let mut moved = w.clone();
        moved.rotate_left(1);
        let aliases = vec![
            format!("{} {}", w.join(" "), FORMS[r.below(FORMS.len())]),
            format!(
                "{} Trading {}",
                moved.join(" "),
                FORMS[r.below(FORMS.len())]
            ),
            cyrillic(&w.join(" ")),
            han(r),
        ];
        ("company", name, aliases)
    } else if roll < 19 {
        let count = 2 + r.below(2);
        let w = words(r, count);
        let mut surname_first = w.clone();
        surname_first.rotate_right(1);
        let aliases = vec![
            surname_first.join(" "),
            format!("{} {}", &w[0][..1], w[w.len() - 1]),
            cyrillic(&w.join(" ")),
            words(r, 2).join(" "),
        ];
        ("person", w.join(" "), aliases)
    } else {
        let count = 1 + r.below(2);
        let w = words(r, count);
        let aliases = vec![
            format!("MV {}", w.join(" ")),
            cyrillic(&w.join(" ")),
            words(r, 2).join(" "),
            format!("{} Star", w.join(" ")),
        ];
        ("vessel", w.join(" ").to_uppercase(), aliases)
    };
    aliases.push(words(r, 3).join(" "));
    let quoted: Vec<String> = aliases.iter().map(|a| format!("{a:?}")).collect();
    let table = format!(
        "\n[[denied_parties]]\nid = \"XX-{i:07}\"\nname = {name:?}\nkind = \"{kind}\"\nsource = \"bench list\"\naliases = [{}]\n",
        quoted.join(", ")
    );
    (table, name)
}

/// A declared name: a listed name as is, one letter changed, or a name
/// the list does not hold.
fn declared(r: &mut Rng, listed: &[String]) -> String {
    let which = r.below(3);
    declared_as(r, listed, which)
}

/// A declared name of one kind: 0 a listed name as is, 1 one letter
/// changed, 2 a name the list does not hold.
fn declared_as(r: &mut Rng, listed: &[String], which: usize) -> String {
    let name = &listed[r.below(listed.len())];
    match which {
        0 => name.clone(),
        1 => {
            let mut c: Vec<char> = name.chars().collect();
            let at = r.below(c.len().max(1));
            c[at] = 'q';
            c.into_iter().collect()
        }
        _ => format!("{} {}", words(r, 2).join(" "), FORMS[r.below(FORMS.len())]),
    }
}

fn rss_peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::var("SCREENING_ENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let issuer = permitgate::keys::generate();
    permitgate::keys::write_keypair(dir.path(), "issuer", &issuer).expect("the issuer key");
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut text = include_str!("../tests/data/policy.toml").to_owned();
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let (table, name) = entity(&mut r, i);
        text.push_str(&table);
        names.push(name);
    }
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, &text).expect("the policy file");
    let file_mib = text.len() as f64 / MIB;
    drop(text);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let policy = Policy::load(&path).expect("the policy loads");
    let load = start.elapsed();
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before) as f64 / MIB;
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before) as f64 / MIB;
    let (listed_names, vocabulary) = policy.screen_index.size();
    println!(
        "screening list: {n} entities, {listed_names} names, {vocabulary} distinct words; policy file {file_mib:.1} MiB"
    );
    println!(
        "load (Policy::load: parse, check, index): {:.2} s; heap held after {held:.0} MiB, peak while loading {peak:.0} MiB; process peak RSS {:.0} MiB",
        load.as_secs_f64(),
        rss_peak_mib()
    );

    // A declaration's three parties: the keys as the parse stage makes
    // them, then the screen as the decision runs it.
    let declarations: Vec<[String; 3]> = (0..3000)
        .map(|_| {
            [
                declared(&mut r, &names),
                declared(&mut r, &names),
                declared(&mut r, &names),
            ]
        })
        .collect();
    let keyed: Vec<Vec<Vec<screening::NameKey>>> = declarations
        .iter()
        .map(|d| d.iter().map(|p| screening::name_keys(p)).collect())
        .collect();
    let list = &policy.denied_parties;
    let mut flagged = 0usize;
    for d in &keyed {
        for keys in d {
            flagged += usize::from(policy.screen_index.screen("", keys, list).is_some());
        }
    }
    let rounds = 10;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for d in &keyed {
            for keys in d {
                black_box(policy.screen_index.screen("", black_box(keys), list));
            }
        }
        times.push(start.elapsed() / keyed.len() as u32);
    }
    times.sort();
    let per = |t: Duration| t.as_secs_f64() * 1e6;
    println!(
        "screen a declaration's three parties (keys made): median {:.1} µs, best {:.1} µs, worst {:.1} µs over {rounds} rounds of {} declarations ({flagged} of {} parties flagged)",
        per(times[rounds / 2]),
        per(times[0]),
        per(times[rounds - 1]),
        keyed.len(),
        keyed.len() * 3
    );
    for (which, what) in ["a listed name", "one letter changed", "a name not listed"]
        .iter()
        .enumerate()
    {
        let parties: Vec<Vec<screening::NameKey>> = (0..3000)
            .map(|_| screening::name_keys(&declared_as(&mut r, &names, which)))
            .collect();
        let start = Instant::now();
        for _ in 0..3 {
            for keys in &parties {
                black_box(policy.screen_index.screen("", black_box(keys), list));
            }
        }
        println!(
            "one party, {what}: {:.1} µs",
            per(start.elapsed() / (3 * parties.len() as u32))
        );
    }
    let start = Instant::now();
    for d in &declarations {
        for p in d {
            let keys = screening::name_keys(black_box(p));
            black_box(policy.screen_index.screen("", &keys, list));
        }
    }
    println!(
        "the same with the keys made from the names (no cache): {:.1} µs a declaration",
        per(start.elapsed() / declarations.len() as u32)
    );

    let set: measure::Set =
        serde_json::from_str(include_str!("../tests/data/screening_pairs.json"))
            .expect("the labelled pairs");
    for (part, pairs) in [("tuning", &set.tuning), ("held out", &set.held_out)] {
        let t = measure::measure(pairs).all;
        println!(
            "labelled pairs, {part}: {} pairs; precision {:.1} %, recall {:.1} %, F1 {:.3}, innocents held {:.1} %, refused wrongly {}",
            pairs.len(),
            t.precision() * 100.0,
            t.recall() * 100.0,
            t.f1(),
            t.innocents_held() * 100.0,
            t.refused_wrongly
        );
    }
}
