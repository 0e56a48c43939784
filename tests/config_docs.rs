//! docs/configuration.md lists every key the three config files accept,
//! and no other. The keys the code accepts are found by asking it: a probe
//! key in each table makes the parser name the keys it expected there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Tables = BTreeMap<String, BTreeSet<String>>;

#[derive(Clone, Copy, Debug)]
enum File {
    Checkpoint,
    Hub,
    Policy,
}

const PROBE: &str = "zzz_probe";

/// The error the loader gives for `text`.
fn load_error(file: File, dir: &Path, text: &str) -> String {
    let path = dir.join("probe.toml");
    std::fs::write(&path, text).unwrap();
    match file {
        File::Checkpoint => permitgate::config::Config::load(&path)
            .err()
            .map(|e| e.to_string()),
        File::Hub => permitgate::hub::HubConfig::load(&path)
            .err()
            .map(|e| e.to_string()),
        File::Policy => permitgate::policy::Policy::from_toml(text, &path)
            .err()
            .map(|e| e.to_string()),
    }
    .unwrap_or_default()
}

/// The keys the table under `header` accepts, or `None` if it is not a table.
fn probe(file: File, dir: &Path, header: &str) -> Option<BTreeSet<String>> {
    let e = load_error(file, dir, &format!("{header}\n{PROBE} = 1\n"));
    if !e.contains(&format!("unknown field `{PROBE}`")) {
        return None;
    }
    let expected = e.split_once("expected").map(|(_, rest)| rest).unwrap_or("");
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
    )
}

/// Every table the code accepts in `file`, by dotted name ("" is the top level).
fn accepted(file: File) -> Tables {
    let dir = tempfile::tempdir().unwrap();
    let mut tables = Tables::new();
    let mut todo = vec![String::new()];
    while let Some(table) = todo.pop() {
        let header = if table.is_empty() {
            String::new()
        } else if table.starts_with("[[") {
            table.clone()
        } else {
            format!("[{table}]")
        };
        let keys = probe(file, dir.path(), &header).unwrap_or_else(|| panic!("{header}"));
        for key in &keys {
            let name = if table.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", table.trim_matches(['[', ']']))
            };
            if probe(file, dir.path(), &format!("[{name}]")).is_some() {
                todo.push(name);
            } else if probe(file, dir.path(), &format!("[[{name}]]")).is_some() {
                todo.push(format!("[[{name}]]"));
            }
        }
        tables.insert(table.trim_matches(['[', ']']).to_owned(), keys);
    }
    tables
}

/// The tables one `## ` section of the page documents.
fn documented(page: &str, section: &str, checkpoint: &Tables) -> Tables {
    let start = page
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("no `## {section}` section"));
    let body = &page[start + 4..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut tables = Tables::new();
    for part in body.split("\n### ").skip(1) {
        let (heading, text) = part.split_once('\n').unwrap_or((part, ""));
        let name = if heading == "Top level" {
            String::new()
        } else {
            heading.trim_matches(['`', '[', ']']).to_owned()
        };
        let keys: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_owned()))
            .collect();
        if !keys.is_empty() {
            tables.insert(name, keys);
            continue;
        }
        // "The same keys as [the checkpoint's] `[X]`": X's keys, and its sub-tables'.
        let flat = text.replace('\n', " ");
        let (_, rest) = flat
            .split_once("same keys as ")
            .unwrap_or_else(|| panic!("`{heading}` lists no keys"));
        let from = if rest.starts_with("the checkpoint's") {
            checkpoint
        } else {
            &tables
        };
        let source = rest
            .split('`')
            .nth(1)
            .unwrap()
            .trim_matches(['[', ']'])
            .to_owned();
        let copied: Vec<(String, BTreeSet<String>)> = from
            .iter()
            .filter_map(|(t, keys)| {
                let suffix = t.strip_prefix(&source)?;
                (suffix.is_empty() || suffix.starts_with('.'))
                    .then(|| (format!("{name}{suffix}"), keys.clone()))
            })
            .collect();
        assert!(
            !copied.is_empty(),
            "`{heading}`: `{source}` is not documented"
        );
        tables.extend(copied);
    }
    tables
}

fn compare(what: &str, code: &Tables, docs: &Tables) {
    let mut wrong = Vec::new();
    for (table, keys) in code {
        let listed = docs.get(table).cloned().unwrap_or_default();
        let path = |k: &str| {
            if table.is_empty() {
                k.to_owned()
            } else {
                format!("{table}.{k}")
            }
        };
        // A key that is a table is documented by its own heading.
        for k in keys
            .difference(&listed)
            .filter(|k| !docs.contains_key(&path(k)))
        {
            wrong.push(format!(
                "{what} `[{table}] {k}` is accepted but not documented"
            ));
        }
        for k in listed.difference(keys) {
            wrong.push(format!(
                "{what} `[{table}] {k}` is documented but not accepted"
            ));
        }
    }
    for table in docs.keys().filter(|t| !code.contains_key(*t)) {
        wrong.push(format!(
            "{what} table `[{table}]` is documented but not accepted"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_configuration_key_is_documented_and_every_documented_key_exists() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let checkpoint = accepted(File::Checkpoint);
    // The probe finds what a reader would look for.
    assert!(checkpoint["mqtt.tls"].contains("ca_file"), "{checkpoint:?}");
    assert!(checkpoint["uplink"].contains("client_id"), "{checkpoint:?}");
    let checkpoint_docs = documented(&page, "The checkpoint", &checkpoint);
    compare("checkpoint", &checkpoint, &checkpoint_docs);
    let hub = accepted(File::Hub);
    compare("hub", &hub, &documented(&page, "The hub", &checkpoint_docs));
    let policy = accepted(File::Policy);
    assert!(policy["issuers"].contains("kid"), "{policy:?}");
    compare(
        "policy",
        &policy,
        &documented(&page, "The policy", &checkpoint_docs),
    );
}
