//! The screen's unit tests: each named miss and innocent from the
//! customs and external sets, the lossless/lossy line, ids, the caches.

use super::index::screen_all;
use super::names::listed_key;
use super::score::{Listed, SAME_WORDS};
use super::*;

fn party(kind: Kind, name: &str, aliases: &[&str]) -> DeniedParty {
    DeniedParty {
        id: String::new(),
        kind,
        display_name: name.to_owned(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        source: "test list".to_owned(),
    }
}

/// How a declared name stands against one entry, through the index and
/// through scoring every name (which must agree).
fn against(declared: &str, entry: DeniedParty) -> Closeness {
    let list = [entry];
    let keys = name_keys(declared);
    let all = screen_all("", &keys, &list).map(|(c, _)| c);
    let indexed = ScreenIndex::new(&list)
        .screen("", &keys, &list)
        .map(|(c, _)| c);
    assert_eq!(indexed, all, "index and full scan differ for {declared}");
    all.unwrap_or(Closeness::Apart)
}

fn held(c: Closeness) -> bool {
    matches!(c, Closeness::Possible(_))
}

#[test]
fn cached_keys_are_the_keys_and_the_cache_stays_bounded() {
    for name in [
        "Shadow Defense Systems, L.L.C.",
        "Шадоу Дефенс Системс ООО",
        "深圳影子防务有限公司",
        "SHАDOW DЕFENSE SYSTEMS LLC",
    ] {
        assert_eq!(&*name_keys_cached(name), name_keys(name).as_slice());
        assert_eq!(&*name_keys_cached(name), name_keys(name).as_slice());
    }
    for n in 0..CACHED_NAMES + 100 {
        name_keys_cached(&format!("Invented Trading {n} GmbH"));
    }
    let kept = NAME_CACHE.lock().map(|c| c.len()).unwrap_or(usize::MAX);
    assert!(kept <= CACHED_NAMES, "{kept} names kept");
}

#[test]
fn the_ascii_skeleton_table_agrees_with_tr39() {
    use unicode_security::confusable_detection::skeleton as tr39;
    // Only `%` (to `°/₀`) leaves ASCII; a string with one takes the long way.
    let outside: Vec<u8> = (0u8..128)
        .filter(|b| ASCII_SKELETON[usize::from(*b)].is_none())
        .collect();
    assert_eq!(outside, b"%");
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
}

/// Lossless steps alone refuse; every lossy step holds at most.
#[test]
fn only_the_listed_name_through_lossless_steps_refuses() {
    let entry = || party(Kind::Company, "Shadow Defense Systems LLC", &[]);
    for same in [
        "Shadow Defense Systems, L.L.C.",
        "SHADOW DEFENSE SYSTEMS LIMITED LIABILITY COMPANY",
        "shadow   defense systems llc",
        "\u{FF33}hadow Defense Systems LLC",
    ] {
        assert_eq!(against(same, entry()), Closeness::Exact, "{same}");
    }
    for likely in [
        "Defense Systems Shadow LLC",
        "Shadow Defense Systems",
        "SHADOW DEFENSE SYS\u{0422}EMS LLC",
        "Shadow Défense Systems LLC",
        "Shadow Defence Systems LLC",
    ] {
        assert!(held(against(likely, entry())), "{likely}");
    }
    assert_eq!(
        against("Shadow Defense Systems", entry()),
        Closeness::Possible(SAME_WORDS)
    );
    // Another firm sharing its shared words only.
    assert_eq!(
        against("Shadow Trading LLC", entry()),
        Closeness::Apart,
        "one word in common"
    );
}

/// The five innocents once refused outright: words sorted, pinyin
/// syllables shared, one character changed.
#[test]
fn names_that_take_a_lossy_step_are_never_refused() {
    for (declared, listed, kind) in [
        ("Friedrich Hans", "Hans Friedrich", Kind::Person),
        ("Friedrich Hans", "Hans Friedrich", Kind::Unknown),
        (
            "SALMAN BIN MUHAMMAD AL-RAWI",
            "MUHAMMAD BIN SALMAN AL-RAWI",
            Kind::Person,
        ),
        ("高石早苗", "高市早苗", Kind::Person),
        (
            "东莞市稀土贸易有限公司",
            "东莞市稀途贸易有限公司",
            Kind::Company,
        ),
    ] {
        let c = against(declared, party(kind, listed, &[]));
        assert_ne!(c, Closeness::Exact, "{declared} / {listed}");
    }
    // Another person's patronym: two people.
    assert_eq!(
        against(
            "SALMAN BIN MUHAMMAD AL-RAWI",
            party(Kind::Person, "MUHAMMAD BIN SALMAN AL-RAWI", &[])
        ),
        Closeness::Apart
    );
    // Other characters of the same sound: another name.
    assert_eq!(
        against("高石早苗", party(Kind::Person, "高市早苗", &[])),
        Closeness::Apart
    );
    assert_eq!(
        against(
            "东莞市稀土贸易有限公司",
            party(Kind::Company, "东莞市稀途贸易有限公司", &[])
        ),
        Closeness::Apart
    );
    // The listed name itself, in its own script, is certain.
    assert_eq!(
        against(
            "东莞市稀途贸易有限公司",
            party(Kind::Company, "东莞市稀途贸易有限公司", &[])
        ),
        Closeness::Exact
    );
    assert_eq!(
        against(
            "ооо  РОСТЕК магнит трейдинг",
            party(Kind::Company, "ООО Ростек Магнит Трейдинг", &[])
        ),
        Closeness::Exact
    );
}

/// The customs set's misses: each is held now.
#[test]
fn the_customs_sets_misses_are_held() {
    let hongda = || {
        party(
            Kind::Company,
            "Shenzhen Hongda Xiyou Jinshu Keji Co., Ltd.",
            &[],
        )
    };
    let hongda_han = || party(Kind::Company, "深圳市宏达稀有金属科技有限公司", &[]);
    for (declared, entry) in [
        // Declared in Han, listed in pinyin; and the reverse.
        ("深圳市宏达稀有金属科技有限公司", hongda()),
        (
            "Shenzhen Hongda Xiyou Jinshu Keji Youxian Gongsi",
            hongda_han(),
        ),
        // 市 dropped from the city.
        ("深圳宏达稀有金属科技有限公司", hongda_han()),
        (
            "Bright Star Magnetics Ltd",
            party(Kind::Company, "Brite Star Magnetics Ltd", &[]),
        ),
        (
            "Kuehnel und Soehne",
            party(Kind::Company, "Kühnel & Söhne", &[]),
        ),
        (
            "Anatolia Kinetic Systems Anonim Sirketi",
            party(Kind::Company, "Anatolia Kinetic Systems A.Ş.", &[]),
        ),
        (
            "Aero-Tech Limited",
            party(Kind::Company, "Aerotech Ltd", &[]),
        ),
        (
            "Aerotech Ltd",
            party(Kind::Company, "Aero-Tech Limited", &[]),
        ),
        (
            "APEX DRONE DYNAMlCS INC",
            party(Kind::Company, "Apex Drone Dynamics Inc.", &[]),
        ),
    ] {
        let listed = entry.display_name.clone();
        let c = against(declared, entry);
        assert!(
            held(c) || c == Closeness::Exact,
            "{declared} / {listed}: {c:?}"
        );
    }
    // The Turkish legal form written out is the same form: certain.
    assert_eq!(
        against(
            "Anatolia Kinetic Systems Anonim Sirketi",
            party(Kind::Company, "Anatolia Kinetic Systems A.Ş.", &[])
        ),
        Closeness::Exact
    );
}

/// The customs set's innocents held before: one letter makes another
/// short word, another bird.
#[test]
fn the_customs_sets_innocents_pass() {
    for (declared, listed) in [
        ("ABD Systems FZE", "ABK Systems FZE"),
        ("Sparrow Aerotech Ltd", "Arrow Aerotech Ltd"),
        (
            "Kinetic Systems Anatolia Textile A.S.",
            "Anatolia Kinetic Systems A.S.",
        ),
        ("Ocean Star 2", "Ocean Star 3"),
        ("Red Anchor Shipping", "Blue Anchor Shipping"),
    ] {
        assert_eq!(
            against(declared, party(Kind::Company, listed, &[])),
            Closeness::Apart,
            "{declared} / {listed}"
        );
    }
}

/// The external set's misses: a patronymic, a transliteration with its
/// particle, a name in Arabic script.
#[test]
fn the_external_sets_misses_are_held() {
    for (declared, listed) in [
        ("Vladimir Vladimirovich Putin", "Vladimir Putin"),
        ("Osama bin Laden", "Usama ibn Laden"),
        ("أسامة بن لادن", "Usama bin Laden"),
        ("Владимир Владимирович Путин", "Vladimir Putin"),
        ("PUTIN, Vladimir", "Vladimir Putin"),
    ] {
        let c = against(declared, party(Kind::Person, listed, &[]));
        assert!(held(c), "{declared} / {listed}: {c:?}");
    }
    // Another father: another person.
    assert_eq!(
        against(
            "Vladimir Ivanovich Putin",
            party(Kind::Person, "Vladimir Vladimirovich Putin", &[])
        ),
        Closeness::Apart
    );
}

/// A person's names move freely; a firm's words met out of order weigh a
/// little less.
#[test]
fn the_entrys_kind_decides_what_word_order_means() {
    let score = |declared: &str, listed: &str, kind: Kind| {
        let d = name_keys(declared);
        let l = listed_key(listed);
        super::score::score(kind, &d[0], &Listed::of(&l)).score
    };
    let (declared, listed) = ("Kinetic Systems Anatolia", "Anatolia Kinetic Systems");
    let person = score(declared, listed, Kind::Person);
    let firm = score(declared, listed, Kind::Company);
    assert!(person > firm, "{person} {firm}");
    let firm = against(declared, party(Kind::Company, listed, &[]));
    assert!(held(firm), "a firm's words moved still hold: {firm:?}");
    // A word added besides: a person's names still hold, a firm's apart.
    let declared = "Kinetic Systems Anatolia Textile";
    assert!(held(against(declared, party(Kind::Person, listed, &[]))));
    assert_eq!(
        against(declared, party(Kind::Company, listed, &[])),
        Closeness::Apart
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
    assert_eq!(uscc_checks("91350100M000100Y44"), Some(false));
    assert_eq!(uscc_checks("91350100M000010Y43"), Some(false));
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
fn ids_one_character_apart_hold() {
    assert!(ids_one_apart("USDE0666", "USDE0667"));
    assert!(ids_one_apart("USDE0666", "USDE6066"));
    assert!(!ids_one_apart("USDE0666", "USDE0666"));
    assert!(!ids_one_apart("USDE0666", "USDE0777"));
    assert!(!ids_one_apart("KP0001", "KP00010"), "another length");
    assert!(!ids_one_apart("KP001", "KP002"), "too short to tell");
    let mut entry = party(Kind::Company, "Shadow Defense Systems LLC", &[]);
    entry.id = id_key("US-DE-0666");
    let list = [entry];
    let index = ScreenIndex::new(&list);
    let one_off = index.screen(&id_key("US-DE-0667"), &name_keys("Acme"), &list);
    assert_eq!(one_off.map(|(c, _)| c), Some(Closeness::Possible(0.9)));
    let itself = index.screen(&id_key("us de 0666"), &name_keys("Acme"), &list);
    assert_eq!(itself.map(|(c, _)| c), Some(Closeness::Exact));
}

/// The hold names the words that met and those that did not.
#[test]
fn the_explanation_marks_what_differs() {
    let list = [party(Kind::Company, "Anatolia Kinetic Systems A.S.", &[])];
    let index = ScreenIndex::new(&list);
    let keys = name_keys("Anatolia Kinetik Systems Trading A.S.");
    let (_, hit) = index.screen("", &keys, &list).expect("held");
    let why = index.explain(&keys, hit, &list).expect("explained");
    let summary = why.summary();
    assert!(summary.contains("anatolia"), "{summary}");
    assert!(summary.contains("kinetik"), "{summary}");
}

fn vowel(c: u8) -> bool {
    b"aeiouy".contains(&c)
}

/// The edit cost as a full table, to hold the three-row one to.
fn reference_edit_cost(a: &str, b: &str) -> f64 {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (n, m) = (a.len(), b.len());
    let indel = |w: &[u8], i: usize| -> f64 {
        let c = w[i];
        let doubled = (i > 0 && w[i - 1] == c) || w.get(i + 1) == Some(&c);
        if doubled || vowel(c) { 0.5 } else { 1.0 }
    };
    let sub = |x: u8, y: u8| -> f64 {
        if x == y {
            0.0
        } else if (vowel(x) && vowel(y))
            || super::names::consonant_class(x) == super::names::consonant_class(y)
        {
            0.5
        } else {
            1.5
        }
    };
    let mut d = vec![vec![0.0f64; m + 1]; n + 1];
    for i in 1..=n {
        d[i][0] = d[i - 1][0] + indel(a, i - 1);
    }
    for j in 1..=m {
        d[0][j] = d[0][j - 1] + indel(b, j - 1);
    }
    for i in 1..=n {
        for j in 1..=m {
            let mut v = (d[i - 1][j] + indel(a, i - 1))
                .min(d[i][j - 1] + indel(b, j - 1))
                .min(d[i - 1][j - 1] + sub(a[i - 1], b[j - 1]));
            if i > 1
                && j > 1
                && a[i - 1] == b[j - 2]
                && a[i - 2] == b[j - 1]
                && a[i - 1] != a[i - 2]
            {
                let swap = if vowel(a[i - 1]) || vowel(a[i - 2]) {
                    0.5
                } else {
                    1.0
                };
                v = v.min(d[i - 2][j - 2] + swap);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

mod index_agrees {
    use super::*;
    use proptest::prelude::*;

    const LIST: &[(&str, Kind)] = &[
        ("Shadow Defense Systems LLC", Kind::Company),
        (
            "Shenzhen Hongda Rare Metals Technology Co., Ltd.",
            Kind::Company,
        ),
        ("ООО Ростек Магнит Трейдинг", Kind::Company),
        ("Falcon Gulf Aerospace FZE", Kind::Unknown),
        ("Nordwind Präzisionstechnik GmbH", Kind::Company),
        ("Korea Ryonbong General Corporation", Kind::Organization),
        ("Usama bin Muhammad bin Awad bin Laden", Kind::Person),
        ("Vladimir Vladimirovich Putin", Kind::Person),
        ("Apex Drone Dynamics Inc.", Kind::Company),
        ("OCEAN STAR 3", Kind::Vessel),
        ("Shadow Defence Systems Inc", Kind::Company),
        ("深圳宏达稀有金属科技有限公司", Kind::Company),
    ];

    fn listed() -> Vec<DeniedParty> {
        LIST.iter()
            .enumerate()
            .map(|(i, (n, kind))| {
                let mut p = party(*kind, n, &[]);
                if i % 3 == 0 {
                    p.id = id_key(&format!("XX-{i}-0042"));
                }
                p
            })
            .collect()
    }

    /// A name with a few of `ops` applied: letters changed, doubled,
    /// dropped, swapped, words moved.
    fn mutate(name: &str, ops: &[(u8, usize)]) -> String {
        let mut c: Vec<char> = name.chars().collect();
        for &(op, at) in ops {
            if c.len() < 2 {
                break;
            }
            let i = at % (c.len() - 1);
            match op % 5 {
                0 => c[i] = 'x',
                1 => c.insert(i, c[i]),
                2 => {
                    c.remove(i);
                }
                3 => c.swap(i, i + 1),
                _ => {
                    let s: String = c.iter().collect();
                    let mut w: Vec<&str> = s.split(' ').collect();
                    w.rotate_left(1);
                    c = w.join(" ").chars().collect();
                }
            }
        }
        c.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Design: the index finds every name that scoring the whole list
        /// would hold or refuse, and answers the same.
        #[test]
        fn the_index_answers_as_scoring_every_entry_does(
            pick in 0..LIST.len(),
            ops in prop::collection::vec((any::<u8>(), any::<usize>()), 0..4),
            id in prop::option::of(0usize..12),
            id_edit in prop::option::of(any::<u8>()),
        ) {
            let list = listed();
            let index = ScreenIndex::new(&list);
            let name = mutate(LIST[pick].0, &ops);
            let mut id = id.map(|i| id_key(&format!("XX-{i}-0042"))).unwrap_or_default();
            if let Some(x) = id_edit.filter(|_| !id.is_empty()) {
                let mut c: Vec<char> = id.chars().collect();
                let i = usize::from(x) % c.len();
                c[i] = if c[i] == '7' { '8' } else { '7' };
                id = c.into_iter().collect();
            }
            let keys = name_keys(&name);
            let a = index.screen(&id, &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            let b = screen_all(&id, &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            prop_assert_eq!(a, b, "{}", name);
        }

        /// The three-row edit cost is the full table's.
        #[test]
        fn the_edit_cost_is_the_full_tables(a in "[a-z]{0,12}", b in "[a-z]{0,12}") {
            prop_assert_eq!(super::super::score::edit_cost(&a, &b), reference_edit_cost(&a, &b));
        }

        /// The edit cost within a budget stops early and answers as the full
        /// table does: the cost when it fits, else nothing.
        #[test]
        fn the_edit_cost_within_a_budget_is_the_full_tables(
            a in "[a-z]{0,12}",
            b in "[a-z]{0,12}",
            halves in 0u8..4,
        ) {
            let budget = f64::from(halves) * 0.5;
            let full = reference_edit_cost(&a, &b);
            let want = (full <= budget).then_some(full);
            prop_assert_eq!(super::super::score::edit_cost_within(&a, &b, budget), want);
        }

        /// Any text at all, in any script, as a declared name: an answer,
        /// the same from the index, never a panic.
        #[test]
        fn any_text_is_screened_without_fault(name in "\\PC{0,60}") {
            let list = listed();
            let index = ScreenIndex::new(&list);
            let keys = name_keys(&name);
            let a = index.screen("", &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            let b = screen_all("", &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            prop_assert_eq!(a, b, "{:?}", name);
        }
    }
}
