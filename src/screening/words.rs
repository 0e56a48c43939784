//! The screen's word lists: legal forms, words many firms share, titles,
//! particles, patronymic endings, numbers, and their Chinese counterparts.
//! Spellings here are as the names module folds a name (lower-case ASCII).

/// Legal forms: (spelling, one spelling), matched against the name's end
/// and start word by word, the longest first.
pub const LEGAL_FORMS: &[(&str, &str)] = &[
    ("gesellschaft mit beschrankter haftung", "gmbh"),
    ("obshchestvo s ogranichennoi otvetstvennostiu", "llc"),
    ("obshchestvo s ogranichennoy otvetstvennostyu", "llc"),
    ("limited liability company", "llc"),
    ("limited liability co", "llc"),
    ("public limited company", "plc"),
    ("public joint stock company", "jsc"),
    ("closed joint stock company", "jsc"),
    ("open joint stock company", "jsc"),
    ("joint stock company", "jsc"),
    ("you xian ze ren gong si", "ltd"),
    ("gu fen you xian gong si", "ltd"),
    ("you xian gong si", "ltd"),
    ("youxian zeren gongsi", "ltd"),
    ("gufen youxian gongsi", "ltd"),
    ("youxian gongsi", "ltd"),
    ("youxiangongsi", "ltd"),
    ("company limited", "ltd"),
    ("co limited", "ltd"),
    ("co ltd", "ltd"),
    ("pte ltd", "ltd"),
    ("pty ltd", "ltd"),
    ("sdn bhd", "ltd"),
    ("fz llc", "fzllc"),
    ("fzco", "fzco"),
    ("fze", "fze"),
    ("private limited", "ltd"),
    ("kabushiki kaisha", "kk"),
    ("chusik hoesa", "co"),
    ("hoesa", "co"),
    ("jusik hoesa", "co"),
    ("jusikhoesa", "co"),
    ("gong si", "co"),
    ("limited", "ltd"),
    ("ltd", "ltd"),
    ("llc", "llc"),
    ("ooo", "llc"),
    ("zao", "jsc"),
    ("oao", "jsc"),
    ("pao", "jsc"),
    ("ao", "jsc"),
    ("jsc", "jsc"),
    ("pjsc", "jsc"),
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
    ("limitada", "ltda"),
    ("ltda", "ltda"),
    ("gmbh und co kg", "gmbhcokg"),
    ("gmbh and co kg", "gmbhcokg"),
    ("gmbh co kg", "gmbhcokg"),
    ("kg", "kg"),
    ("sp z oo", "spzoo"),
    ("pvt ltd", "ltd"),
    ("llp", "llp"),
    ("cjsc", "jsc"),
    ("sa", "sa"),
    ("bv", "bv"),
    ("kk", "kk"),
];

/// Words many unrelated firms share: kept in the name, weighed little.
pub const COMMON_WORDS: &[&str] = &[
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
    "for",
    "general",
    "supplies",
    "state",
    "national",
    "research",
    "institute",
    "university",
    "academy",
    "ministry",
    "department",
    "bureau",
    "center",
    "centre",
    "scientific",
    "federal",
    "republic",
    "und",
    "et",
    "of",
    "keji",
    "maoyi",
    "shiye",
    "guoji",
    "jituan",
    "jinchukou",
    "shipping",
    "engineering",
    // Places that name many firms (and [`HAN_PLACES`]' pinyin).
    "china",
    "shenzhen",
    "shanghai",
    "beijing",
    "guangzhou",
    "dongguan",
    "jiangsu",
    "zhejiang",
    "guangdong",
    "hongkong",
    "baotou",
    "ganzhou",
    "xiamen",
    "tianjin",
    "ningbo",
    "suzhou",
    "moscow",
    "dubai",
    "singapore",
    "usa",
    "us",
    "europe",
    "asia",
];

/// Titles and honorifics before a person's name, and vessels' prefixes:
/// not part of the name.
pub const TITLES: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "prof",
    "professor",
    "sir",
    "dame",
    "lord",
    "sheikh",
    "shaikh",
    "sheik",
    "haji",
    "hajji",
    "hajj",
    "mullah",
    "imam",
    "sayyid",
    "sayed",
    "emir",
    "amir",
    "prince",
    "princess",
    "king",
    "general",
    "gen",
    "colonel",
    "col",
    "major",
    "maj",
    "captain",
    "capt",
    "admiral",
    "adm",
    "lieutenant",
    "lt",
    "brigadier",
    "marshal",
    "eng",
    "engineer",
    "gospodin",
    "herr",
    "frau",
    "monsieur",
    "madame",
    "senor",
    "senora",
    "mv",
    "mt",
    "ss",
    "fv",
];

/// Particles inside names: `bin` and `ibn` say the same; `al` is the
/// article. Weigh nothing, but keep their place.
pub const PARTICLES: &[&str] = &[
    "bin", "ibn", "ben", "bint", "binti", "ould", "abu", "al", "el", "ul", "ad", "ar", "as", "ash",
    "at", "az", "van", "von", "der", "den", "de", "del", "della", "da", "di", "du", "la", "le",
    "dos", "das", "ter", "zu", "y",
];

/// Particles that say "child of": the word before one is a given name,
/// the word after it the father's.
pub const FILIAL: &[&str] = &["bin", "ibn", "ben", "bint", "binti", "ould"];

/// Endings of patronymics (Russian, Ukrainian, Belarusian, Turkic, Icelandic).
pub const PATRONYMIC_ENDINGS: &[&str] = &[
    "ovich", "evich", "ovna", "evna", "ichna", "ovych", "evych", "ivna", "ich", "ogly", "oglu",
    "uly", "kyzy", "qizi", "ovic", "evic", "sson", "sdottir",
];

/// Numbers written as words, ordinals and Roman numerals: (spelling,
/// digits). Single letters are initials, not numerals.
pub const NUMBER_WORDS: &[(&str, &str)] = &[
    ("one", "1"),
    ("first", "1"),
    ("1st", "1"),
    ("two", "2"),
    ("second", "2"),
    ("2nd", "2"),
    ("ii", "2"),
    ("three", "3"),
    ("third", "3"),
    ("3rd", "3"),
    ("iii", "3"),
    ("four", "4"),
    ("fourth", "4"),
    ("4th", "4"),
    ("iv", "4"),
    ("five", "5"),
    ("fifth", "5"),
    ("5th", "5"),
    ("six", "6"),
    ("sixth", "6"),
    ("6th", "6"),
    ("vi", "6"),
    ("seven", "7"),
    ("seventh", "7"),
    ("7th", "7"),
    ("vii", "7"),
    ("eight", "8"),
    ("eighth", "8"),
    ("8th", "8"),
    ("viii", "8"),
    ("nine", "9"),
    ("ninth", "9"),
    ("9th", "9"),
    ("ix", "9"),
    ("ten", "10"),
    ("tenth", "10"),
    ("10th", "10"),
];

/// Legal forms written in Chinese, Japanese and Korean, as a name ends:
/// (spelling, one spelling), longest first. (Russian ones are words,
/// found among [`LEGAL_FORMS`] once transliterated.)
pub const NATIVE_FORMS: &[(&str, &str)] = &[
    ("股份有限公司", "jsc"),
    ("有限责任公司", "ltd"),
    ("有限責任公司", "ltd"),
    ("有限公司", "ltd"),
    ("有限會社", "ltd"),
    ("株式会社", "kk"),
    ("株式會社", "kk"),
    ("주식회사", "co"),
    ("회사", "co"),
    ("公司", "co"),
    ("(株)", "kk"),
    ("(有)", "ltd"),
    ("(주)", "co"),
];

/// Chinese place names that start many firms' names, and their pinyin
/// as one word (as Latin names write them); a following 市, 省, 区 or 县
/// goes with them.
pub const HAN_PLACES: &[(&str, &str)] = &[
    ("中国", "china"),
    ("北京", "beijing"),
    ("上海", "shanghai"),
    ("天津", "tianjin"),
    ("重庆", "chongqing"),
    ("深圳", "shenzhen"),
    ("广州", "guangzhou"),
    ("东莞", "dongguan"),
    ("佛山", "foshan"),
    ("苏州", "suzhou"),
    ("杭州", "hangzhou"),
    ("宁波", "ningbo"),
    ("厦门", "xiamen"),
    ("青岛", "qingdao"),
    ("大连", "dalian"),
    ("武汉", "wuhan"),
    ("成都", "chengdu"),
    ("西安", "xian"),
    ("南京", "nanjing"),
    ("香港", "hongkong"),
    ("包头", "baotou"),
    ("赣州", "ganzhou"),
    ("广东", "guangdong"),
    ("江苏", "jiangsu"),
    ("浙江", "zhejiang"),
    ("江西", "jiangxi"),
    ("内蒙古", "neimenggu"),
    ("福建", "fujian"),
    ("山东", "shandong"),
    ("四川", "sichuan"),
    ("湖南", "hunan"),
    ("湖北", "hubei"),
    ("河北", "hebei"),
    ("河南", "henan"),
    ("辽宁", "liaoning"),
    ("吉林", "jilin"),
    ("黑龙江", "heilongjiang"),
    ("哈尔滨", "harbin"),
    ("云南", "yunnan"),
    ("广西", "guangxi"),
    ("郑州", "zhengzhou"),
    ("长沙", "changsha"),
    ("合肥", "hefei"),
    ("济南", "jinan"),
    ("福州", "fuzhou"),
    ("无锡", "wuxi"),
    ("常州", "changzhou"),
    ("温州", "wenzhou"),
    ("珠海", "zhuhai"),
    ("中山", "zhongshan"),
    ("惠州", "huizhou"),
    ("烟台", "yantai"),
    ("平壤", "pyongyang"),
    ("首尔", "seoul"),
];

/// The administrative suffixes a place name may carry.
pub const HAN_PLACE_SUFFIXES: &[char] = &['市', '省', '区', '县'];

/// Chinese words many unrelated firms share, and what Latin names write
/// for them (nothing for a word they leave out).
pub const HAN_COMMON: &[(&str, &str)] = &[
    ("进出口", "import export"),
    ("新材料", "new materials"),
    ("研究所", "institute"),
    ("研究院", "institute"),
    ("科技", "technology"),
    ("贸易", "trading"),
    ("实业", "industrial"),
    ("国际", "international"),
    ("集团", "group"),
    ("材料", "materials"),
    ("发展", "development"),
    ("技术", "technology"),
    ("电子", "electronic"),
    ("物流", "logistics"),
    ("控股", "holdings"),
    ("商贸", "trading"),
    ("船务", "shipping"),
    ("航运", "shipping"),
    ("工程", "engineering"),
    ("大学", "university"),
    ("有限", ""),
    ("责任", ""),
    ("股份", ""),
    ("公司", "company"),
    ("第", ""),
    ("号", ""),
];

/// Words of one contrast, each with its meaning: two names that each hold
/// one, and none of the same meaning, are two parties (`north` and
/// `northern` mean one thing).
pub const CONTRASTS: &[&[(&str, u8)]] = &[
    &[
        ("red", 0),
        ("blue", 1),
        ("green", 2),
        ("black", 3),
        ("white", 4),
        ("yellow", 5),
        ("golden", 6),
        ("gold", 6),
        ("silver", 7),
    ],
    &[
        ("north", 0),
        ("northern", 0),
        ("south", 1),
        ("southern", 1),
        ("east", 2),
        ("eastern", 2),
        ("west", 3),
        ("western", 3),
    ],
];

static COMMON: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| {
        COMMON_WORDS
            .iter()
            .copied()
            .chain(HAN_PLACES.iter().map(|(_, p)| *p))
            .collect()
    });

/// Whether `word` is shared by many unrelated names (a common word, or a
/// place that names many firms).
pub fn is_common(word: &str) -> bool {
    COMMON.contains(word)
}

/// Whether `word` is one of `list`.
pub fn is_in(list: &[&str], word: &str) -> bool {
    list.contains(&word)
}

/// A number word's digits (`ii`, `second`, `2nd` → `2`), or the word
/// itself when it is digits.
pub fn number_of(word: &str) -> Option<&str> {
    // Digits, and ordinals written with them (`41st`, `2nd`).
    let digits = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|s| word.strip_suffix(s))
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(word);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(digits.trim_start_matches('0'))
            .filter(|w| !w.is_empty())
            .or(Some("0"));
    }
    NUMBER_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, d)| *d)
}

/// Whether `word` ends as a patronymic does (and is long enough to be one).
pub fn is_patronymic(word: &str) -> bool {
    word.len() >= 7 && PATRONYMIC_ENDINGS.iter().any(|e| word.ends_with(e))
}
