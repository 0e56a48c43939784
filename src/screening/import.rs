//! Denied-party lists from standard formats into the policy: OpenSanctions'
//! FollowTheMoney entities (JSON lines) and their "simple" CSV, written out
//! as `[[denied_parties]]` tables for the policy file.

use serde::Serialize;

/// The formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// FollowTheMoney entities, one JSON object per line.
    FtmJsonLines,
    /// OpenSanctions' simple CSV (`id,schema,name,aliases,…,identifiers,…,dataset`).
    SimpleCsv,
}

/// One denied party, as the policy file lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// A registration or tax number, when the list gives one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The listed name.
    pub name: String,
    /// Other names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Where it comes from.
    pub source: String,
    /// What it is (its FollowTheMoney schema's kind).
    pub kind: super::Kind,
}

/// A list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line of JSON lines is not a JSON object.
    #[error("line {line}: not a FollowTheMoney entity: {why}")]
    Json {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The CSV cannot be read.
    #[error("CSV record {record}: {why}")]
    Csv {
        /// 1-based record (the header is 0).
        record: usize,
        /// What is wrong.
        why: String,
    },
    /// The CSV lacks a column it needs.
    #[error("the CSV has no `{0}` column; is it OpenSanctions' simple CSV?")]
    Column(&'static str),
}

/// Identifier properties, best first.
const ID_PROPERTIES: &[&str] = &[
    "registrationNumber",
    "taxNumber",
    "innCode",
    "ogrnCode",
    "leiCode",
    "uscCode",
    "idNumber",
    "imoNumber",
];

/// Reads a list; `source` names it when given, else each entity's datasets do.
pub fn read(text: &str, format: Format, source: Option<&str>) -> Result<Vec<Entry>, ImportError> {
    match format {
        Format::FtmJsonLines => read_ftm(text, source),
        Format::SimpleCsv => read_csv(text, source),
    }
}

fn read_ftm(text: &str, source: Option<&str>) -> Result<Vec<Entry>, ImportError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| ImportError::Json {
            line: n + 1,
            why: e.to_string(),
        })?;
        // Schemata that cannot be a party to a shipment (securities,
        // wallets, addresses…) are left out.
        let Some(kind) = super::Kind::of_schema(v["schema"].as_str().unwrap_or_default()) else {
            continue;
        };
        let props = &v["properties"];
        let values = |key: &str| strings(&props[key]);
        let mut names = values("name");
        if names.is_empty()
            && let Some(c) = v["caption"].as_str()
        {
            names.push(c.to_owned());
        }
        let Some(name) = names.first().cloned() else {
            continue;
        };
        let mut aliases: Vec<String> = names.into_iter().skip(1).collect();
        for key in ["alias", "previousName", "weakAlias"] {
            aliases.extend(values(key));
        }
        let id = ID_PROPERTIES
            .iter()
            .find_map(|k| values(k).into_iter().next())
            .unwrap_or_default();
        let datasets = strings(&v["datasets"]);
        out.push(entry(id, name, aliases, source, &datasets.join(", "), kind));
    }
    Ok(out)
}

/// The strings of a JSON array (FollowTheMoney's values are all arrays of strings).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn read_csv(text: &str, source: Option<&str>) -> Result<Vec<Entry>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| ImportError::Csv {
            record: 0,
            why: e.to_string(),
        })?
        .clone();
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(ImportError::Column(name))
    };
    let (schema, name, aliases) = (column("schema")?, column("name")?, column("aliases")?);
    let identifiers = column("identifiers").ok();
    let dataset = column("dataset").ok();
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let r = record.map_err(|e| ImportError::Csv {
            record: n + 1,
            why: e.to_string(),
        })?;
        let field = |i: usize| r.get(i).unwrap_or_default();
        let Some(kind) = super::Kind::of_schema(field(schema)) else {
            continue;
        };
        if field(name).trim().is_empty() {
            continue;
        }
        let many = |s: &str| -> Vec<String> {
            s.split(';')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let id = identifiers
            .map(|i| many(field(i)))
            .unwrap_or_default()
            .into_iter()
            .next()
            .unwrap_or_default();
        out.push(entry(
            id,
            field(name).trim().to_owned(),
            many(field(aliases)),
            source,
            dataset.map(field).unwrap_or_default(),
            kind,
        ));
    }
    Ok(out)
}

fn entry(
    id: String,
    name: String,
    mut aliases: Vec<String>,
    source: Option<&str>,
    datasets: &str,
    kind: super::Kind,
) -> Entry {
    aliases.retain(|a| *a != name);
    aliases.dedup();
    Entry {
        id,
        name,
        aliases,
        source: source
            .map(str::to_owned)
            .unwrap_or_else(|| datasets.to_owned()),
        kind,
    }
}

/// The entries as `[[denied_parties]]` tables, to append to a policy file.
pub fn to_toml(entries: &[Entry]) -> String {
    #[derive(Serialize)]
    struct Tables<'a> {
        denied_parties: &'a [Entry],
    }
    toml::to_string(&Tables {
        denied_parties: entries,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_give_the_same_entries_and_the_policy_reads_them() {
        let ftm = concat!(
            r#"{"id":"NK-1","schema":"Company","properties":{"name":["Shadow Defense Systems LLC"],"alias":["SDS"],"registrationNumber":["US-DE-0666"]},"datasets":["us_bis_entity"]}"#,
            "\n",
            r#"{"id":"NK-2","schema":"Vessel","properties":{"name":["Sea Ghost"]}}"#,
            "\n",
            r#"{"id":"NK-4","schema":"CryptoWallet","properties":{"name":["0xabc"]}}"#,
            "\n",
            r#"{"id":"NK-3","schema":"Company","caption":"Rostek Magnit Trading LLC","properties":{"alias":["ООО Ростек Магнит Трейдинг"]},"datasets":["ru_list"]}"#,
            "\n"
        );
        let csv = "id,schema,name,aliases,birth_date,countries,addresses,identifiers,sanctions,phones,emails,dataset,first_seen,last_seen,last_change\n\
            NK-1,Company,Shadow Defense Systems LLC,SDS,,us,,US-DE-0666,,,,us_bis_entity,,,\n\
            NK-2,Vessel,Sea Ghost,,,,,,,,,,,,\n\
            NK-4,CryptoWallet,0xabc,,,,,,,,,x,,,\n\
            NK-3,Company,Rostek Magnit Trading LLC,\"ООО Ростек Магнит Трейдинг\",,ru,,,,,,ru_list,,,\n";
        let a = read(ftm, Format::FtmJsonLines, None).unwrap();
        let b = read(csv, Format::SimpleCsv, None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].id, "US-DE-0666");
        let kinds: Vec<_> = a.iter().map(|e| e.kind).collect();
        use super::super::Kind;
        assert_eq!(kinds, [Kind::Company, Kind::Vessel, Kind::Company]);
        assert_eq!(a[2].aliases, ["ООО Ростек Магнит Трейдинг"]);

        let dir = tempfile::tempdir().unwrap();
        let (p, _) = crate::policy::tests::sample(dir.path());
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push('\n');
        text.push_str(&to_toml(&a));
        std::fs::write(&p, text).unwrap();
        let policy = crate::policy::Policy::load(&p).unwrap();
        assert!(
            policy
                .denied_parties
                .iter()
                .any(|d| d.source == "ru_list" && d.aliases.len() == 1 && d.kind == Kind::Company)
        );
    }

    #[test]
    fn unreadable_lists_say_where() {
        let e = read(
            "{\"schema\":\"Company\"}\nnot json\n",
            Format::FtmJsonLines,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let e = read("id,name\n1,x\n", Format::SimpleCsv, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CSV has no `schema` column; is it OpenSanctions' simple CSV?"
        );
    }
}
