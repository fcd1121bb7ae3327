//! The module graph of `scheduler/src` (see the layout in `lib.rs`): which module may
//! name which. Arrows point down, from the wiring (commands, api, engine) to the pure
//! parts (policy, schedule, record); an arrow back up is a failure here, with the file
//! and line, before it becomes a knot. Tests (`#[cfg(test)]` and below, `tests.rs`,
//! `tests/`) and comments are not read: tests may reach anywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each module, and the top-level modules its code never names (`crate::X`).
const FORBIDDEN: &[(&str, &[&str])] = &[
    // Pure: the policy language knows only records (verdict names) and schedules.
    (
        "policy",
        &[
            "engine", "fault", "api", "commands", "targets", "history", "journal", "state",
            "report", "trigger", "leader",
        ],
    ),
    (
        "schedule",
        &[
            "engine", "fault", "api", "commands", "targets", "history", "journal", "state",
            "report", "trigger", "leader", "record", "policy",
        ],
    ),
    // The records and where they are kept: below the engine and the faults. (`record`
    // names `api::openapi::Fault` in one schema attribute: see lib.rs.)
    (
        "record",
        &[
            "engine", "fault", "commands", "targets", "history", "policy", "journal", "state",
        ],
    ),
    (
        "journal",
        &[
            "engine", "fault", "api", "commands", "targets", "history", "report",
        ],
    ),
    (
        "history",
        &["engine", "fault", "api", "commands", "targets", "report"],
    ),
    (
        "state",
        &["engine", "fault", "api", "commands", "targets", "report"],
    ),
    (
        "labels",
        &[
            "engine", "fault", "api", "commands", "targets", "history", "policy", "record",
        ],
    ),
    (
        "kinds",
        &[
            "engine", "fault", "api", "commands", "targets", "history", "policy",
        ],
    ),
    // Reports read records and the history, never the running service.
    (
        "report",
        &[
            "engine", "fault", "api", "commands", "targets", "leader", "trigger", "state",
        ],
    ),
    // Target selection and the safety rules: no arrow up to what uses them.
    (
        "targets",
        &["engine", "fault", "api", "commands", "history", "report"],
    ),
    ("leader", &["engine", "fault", "api", "commands", "targets"]),
    ("fault", &["engine", "api", "commands"]),
    // Rollout triggers start experiments through the arbiter, as the clock does.
    ("trigger", &["api", "commands"]),
    ("engine", &["api", "commands"]),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments, with line numbers.
fn code(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| !l.starts_with("#[cfg(test)]"))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.split(" // ").next().unwrap_or(l).to_string()))
        .collect()
}

/// The top-level modules a file's code names: `crate::X` and the first segment of each
/// member of `use crate::{X, Y::..}` groups, each with its line.
fn named(lines: &[(usize, String)]) -> Vec<(usize, String)> {
    let chars: Vec<(usize, char)> = lines
        .iter()
        .flat_map(|(n, l)| l.chars().chain(std::iter::once('\n')).map(move |c| (*n, c)))
        .collect();
    let word_at = |mut i: usize| {
        let mut word = String::new();
        while let Some((_, c)) = chars
            .get(i)
            .filter(|(_, c)| c.is_alphanumeric() || *c == '_')
        {
            word.push(*c);
            i += 1;
        }
        word
    };
    let prefix: Vec<char> = "crate::".chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + prefix.len() < chars.len() {
        let here = chars[i..i + prefix.len()].iter().map(|(_, c)| *c);
        if !here.eq(prefix.iter().copied()) {
            i += 1;
            continue;
        }
        i += prefix.len();
        if chars[i].1 != '{' {
            found.push((chars[i].0, word_at(i)));
            continue;
        }
        // A group: each member's first segment, at depth 1.
        let mut depth = 0;
        let mut member_start = true;
        while i < chars.len() {
            let (line, c) = chars[i];
            match c {
                '{' => {
                    depth += 1;
                    member_start = depth == 1;
                }
                '}' => depth -= 1,
                ',' if depth == 1 => member_start = true,
                c if depth == 1 && member_start && (c.is_alphanumeric() || c == '_') => {
                    let word = word_at(i);
                    i += word.len();
                    found.push((line, word));
                    member_start = false;
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                break;
            }
            i += 1;
        }
    }
    found
}

#[test]
fn no_module_names_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut arrows = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a name");
        let text = std::fs::read_to_string(file).expect("read");
        for (line, module) in named(&code(&text)) {
            arrows.insert((top.clone(), module.clone()));
            let forbidden = FORBIDDEN
                .iter()
                .find(|(m, _)| *m == top)
                .is_some_and(|(_, f)| f.contains(&module.as_str()));
            if forbidden {
                wrong.push(format!(
                    "{}:{line}: {top} names crate::{module}",
                    rel.display()
                ));
            }
        }
    }
    // The scan itself works: arrows every build has are found.
    for known in [
        ("engine", "fault"),
        ("fault", "targets"),
        ("commands", "engine"),
    ] {
        assert!(
            arrows.contains(&(known.0.to_string(), known.1.to_string())),
            "the scan missed {known:?}: {arrows:?}"
        );
    }
    assert!(wrong.is_empty(), "arrows back up:\n{}", wrong.join("\n"));
}

/// The wire model (`policy::model`, what YAML parses into) stays inside `policy/`: the
/// rest of havoc reads the validated domain types.
#[test]
fn only_the_policy_module_reads_the_wire_model() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src").to_path_buf();
        if rel.starts_with("policy") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (line, l) in code(&text) {
            if l.contains("policy::model") || l.contains("policy::{model") {
                wrong.push(format!("{}:{line}: {}", rel.display(), l.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the wire model outside policy/:\n{}",
        wrong.join("\n")
    );
}
