//! Chemical element symbols and HS codes: the vocabulary declarations use.

/// Every element symbol, in atomic-number order.
const SYMBOLS: [&str; 118] = [
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",
    "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk",
    "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh",
    "Fl", "Mc", "Lv", "Ts", "Og",
];

/// The canonical symbol (`Dy`) for a symbol in any ASCII case, or `None` if it is no element.
///
/// Design: only ASCII is accepted, so a look-alike such as Cyrillic `у` in
/// `Dу` is not an element and the declaration is refused as malformed,
/// rather than slipping past the control list as an unknown substance.
pub fn canonical_symbol(s: &str) -> Option<&'static str> {
    let s = s.trim();
    SYMBOLS
        .iter()
        .find(|sym| sym.eq_ignore_ascii_case(s))
        .copied()
}

/// The digits of an HS code written with or without dots and spaces
/// (`8505.11` → `850511`), or `None` if it holds anything else or is not
/// 4 to 10 digits long.
pub fn hs_digits(code: &str) -> Option<String> {
    let mut digits = String::with_capacity(code.len());
    for c in code.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '.' | ' ' => {}
            _ => return None,
        }
    }
    (4..=10).contains(&digits.len()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols() {
        assert_eq!(canonical_symbol("dy"), Some("Dy"));
        assert_eq!(canonical_symbol(" DY "), Some("Dy"));
        assert_eq!(canonical_symbol("Y"), Some("Y"));
        assert_eq!(canonical_symbol("D\u{443}"), None);
        assert_eq!(canonical_symbol("Xx"), None);
    }

    #[test]
    fn hs_codes() {
        assert_eq!(hs_digits("8505.11").as_deref(), Some("850511"));
        assert_eq!(hs_digits("2805 30 00").as_deref(), Some("28053000"));
        assert_eq!(hs_digits("85O511"), None);
        assert_eq!(hs_digits("85"), None);
    }
}
