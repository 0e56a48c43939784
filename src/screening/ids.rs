//! Identifiers as the list compares them: width, case and punctuation
//! aside; look-alike letters folded; one character apart; and check
//! digits where the id says what it is.

use unicode_normalization::UnicodeNormalization;

/// The score of an id that is the listed one's look-alike, not itself.
pub const ID_LOOK_ALIKE: f64 = 0.99;

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
    super::skeleton(key)
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
