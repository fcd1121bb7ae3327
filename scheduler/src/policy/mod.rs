//! Policy files and the service configuration: parsing, validation, JSON Schema.
//!
//! Reading a file takes these steps, each reporting located problems:
//! 0. [`read_file`], [`file_text`]: at most [`yaml::MAX_FILE_BYTES`] of UTF-8 text;
//! 1. [`yaml`]: YAML text to JSON values plus a position index (syntax errors);
//! 2. serde into the wire [`model`] with unknown fields denied (shape errors; an unknown
//!    field is reported and then dropped so that the rest of the document is still checked);
//! 3. [`validate`]: meaning (cron, time zones, selectors, ...) into the [`domain`] types,
//!    with every default resolved: nothing outside `policy/` reads the wire model.
//!
//! A file is the unit of acceptance: if it has any problem, none of its policies load,
//! while every other file still does.

pub mod domain;
pub mod duration;
pub mod expr;
#[cfg(test)]
pub mod fixtures;
pub mod model;
pub mod schema;
pub mod selector;
pub mod set;
pub mod validate;
pub mod yaml;

use std::{
    collections::BTreeMap,
    fmt,
    io::Read,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::{
    domain::{Config, Context, Policy},
    model::{ChaosPolicy, HavocConfig},
    yaml::Pos,
};
use self::{
    validate::Issue,
    yaml::{Locations, MAX_FILE_BYTES, push_pointer},
};

/// A value that means nothing valid, with a message for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A located problem in a file, printed like a compiler error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl Diagnostic {
    /// The line of a warning: as the error's, with `warning:`.
    pub fn warning_line(&self) -> String {
        format!(
            "{}:{}:{}: warning: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

/// The outcome of reading one file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub path: PathBuf,
    /// Valid policies with the position of their name (for duplicate reports).
    pub policies: Vec<(Policy, Pos)>,
    pub configs: Vec<Config>,
    pub diagnostics: Vec<Diagnostic>,
    /// Valid but worth a second look (e.g. a destructive opt-in): printed, never a
    /// reason to reject the file.
    pub warnings: Vec<Diagnostic>,
}

impl FileReport {
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// The outcome of reading a set of files and directories.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub files: Vec<FileReport>,
}

impl LoadReport {
    /// Every problem, in file order.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }

    /// Every warning, in file order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.warnings.iter())
    }

    pub fn is_valid(&self) -> bool {
        self.files.iter().all(FileReport::is_valid)
    }

    /// The policies of every valid file.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.files
            .iter()
            .filter(|f| f.is_valid())
            .flat_map(|f| f.policies.iter().map(|(p, _)| p))
    }
}

/// What kinds of documents a file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A policy directory: ChaosPolicy only.
    Policies,
    /// `havoc validate`: either kind.
    Any,
}

/// Lists the policy files of the given paths: files as given, and the `*.yaml` / `*.yml`
/// files directly inside directories (not recursive: a mounted ConfigMap keeps older
/// versions in hidden sub-directories), skipping hidden names, sorted.
pub fn discover(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                            !name.starts_with('.')
                                && (name.ends_with(".yaml") || name.ends_with(".yml"))
                                && p.is_file()
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => problems.push(file_error(path, format!("cannot read directory: {e}"))),
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            problems.push(file_error(path, "no such file or directory".to_string()));
        }
    }
    (files, problems)
}

fn file_error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        pos: Pos::START,
        message,
    }
}

/// Why a file's bytes are not policy text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read file: {0}")]
    Io(#[source] std::io::Error),
    #[error("{}", yaml::Problem::TooLarge)]
    TooLarge,
    #[error("file is not UTF-8 text: invalid byte 0x{byte:02X}")]
    NotUtf8 { pos: Pos, byte: u8 },
}

impl ReadError {
    /// Where to report it: the first bad byte, else the start of the file.
    pub fn pos(&self) -> Pos {
        match self {
            ReadError::NotUtf8 { pos, .. } => *pos,
            ReadError::Io(_) | ReadError::TooLarge => Pos::START,
        }
    }
}

/// Reads a policy file, never more than [`MAX_FILE_BYTES`] + 1 bytes of it (a huge file,
/// or a device, costs no more memory than an acceptable one).
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// A file's bytes as text: at most [`MAX_FILE_BYTES`], UTF-8 (a bad byte is located).
pub fn file_text(bytes: &[u8]) -> Result<&str, ReadError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // `good` is valid UTF-8 by definition: count lines and characters in it.
        let good = std::str::from_utf8(good).unwrap_or_default();
        let line_start = good.rfind('\n').map_or(0, |i| i + 1);
        ReadError::NotUtf8 {
            pos: Pos {
                line: good.matches('\n').count() + 1,
                col: good[line_start..].chars().count() + 1,
            },
            byte: bytes[e.valid_up_to()],
        }
    })
}

/// Reads one file's bytes: size and encoding first, then [`load_str`].
pub fn load_bytes(path: &Path, bytes: &[u8], ctx: &Context, expect: Expect) -> FileReport {
    match file_text(bytes) {
        Ok(t) => load_str(path, t, ctx, expect),
        Err(e) => FileReport {
            path: path.to_path_buf(),
            diagnostics: vec![Diagnostic {
                file: path.to_path_buf(),
                pos: e.pos(),
                message: e.to_string(),
            }],
            ..FileReport::default()
        },
    }
}

/// Reads files and directories of policies (and, with [`Expect::Any`], configs), checks
/// policy names for uniqueness across all valid files.
pub fn load_paths(paths: &[PathBuf], ctx: &Context, expect: Expect) -> LoadReport {
    let (files, problems) = discover(paths);
    let mut report = LoadReport::default();
    for p in problems {
        report.files.push(FileReport {
            path: p.file.clone(),
            diagnostics: vec![p],
            ..FileReport::default()
        });
    }
    for file in files {
        let loaded = match read_file(&file) {
            Ok(bytes) => load_bytes(&file, &bytes, ctx, expect),
            Err(e) => FileReport {
                diagnostics: vec![file_error(&file, e.to_string())],
                path: file,
                ..FileReport::default()
            },
        };
        report.files.push(loaded);
    }
    check_unique_names(&mut report);
    report
}

/// Marks policies whose name a previous valid file already uses.
fn check_unique_names(report: &mut LoadReport) {
    let mut seen: BTreeMap<String, (PathBuf, Pos)> = BTreeMap::new();
    for file in &mut report.files {
        let mut dups = Vec::new();
        for (policy, pos) in &file.policies {
            match seen.get(&policy.name) {
                Some((other, other_pos)) => dups.push(Diagnostic {
                    file: file.path.clone(),
                    pos: *pos,
                    message: format!(
                        "duplicate policy name {:?}: also defined at {}:{}:{}",
                        policy.name,
                        other.display(),
                        other_pos.line,
                        other_pos.col
                    ),
                }),
                None => {
                    seen.insert(policy.name.clone(), (file.path.clone(), *pos));
                }
            }
        }
        file.diagnostics.extend(dups);
    }
}

/// Reads one file's text.
pub fn load_str(path: &Path, text: &str, ctx: &Context, expect: Expect) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        ..FileReport::default()
    };
    // One line per problem, whatever the underlying error printed.
    let locate = |pos: Pos, message: String| Diagnostic {
        file: path.to_path_buf(),
        pos,
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let docs = match yaml::parse_stream(text) {
        Ok(docs) => docs,
        Err(e) => {
            report
                .diagnostics
                .push(locate(e.pos, e.problem.to_string()));
            return report;
        }
    };
    if docs.is_empty() {
        report.diagnostics.push(locate(
            Pos::START,
            "no documents: expected at least one ChaosPolicy".to_string(),
        ));
    }
    for doc in docs {
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                report
                    .diagnostics
                    .push(locate(e.pos, e.problem.to_string()));
                continue;
            }
        };
        let locations = doc.locations;
        let issues = match load_document(doc.value, &locations, path, ctx, expect, &mut report) {
            Ok(()) => continue,
            Err(issues) => issues,
        };
        for issue in issues {
            let pos = if issue.at_key {
                locations.key(&issue.pointer)
            } else {
                locations.value(&issue.pointer)
            };
            report.diagnostics.push(locate(pos, issue.message));
        }
    }
    report.diagnostics.sort();
    if report.diagnostics.len() > MAX_FILE_DIAGNOSTICS {
        let more = report.diagnostics.len() - MAX_FILE_DIAGNOSTICS;
        let next = report.diagnostics[MAX_FILE_DIAGNOSTICS].pos;
        report.diagnostics.truncate(MAX_FILE_DIAGNOSTICS);
        report.diagnostics.push(locate(
            next,
            format!("too many problems: {more} more in this file not shown"),
        ));
    }
    report
}

/// Problems reported per file: a file of thousands of broken documents is rejected with
/// the first ones, instead of flooding the terminal or the service log on every reload.
pub const MAX_FILE_DIAGNOSTICS: usize = 100;

fn load_document(
    mut value: Value,
    locations: &Locations,
    path: &Path,
    ctx: &Context,
    expect: Expect,
    report: &mut FileReport,
) -> Result<(), Vec<Issue>> {
    let Value::Object(map) = &value else {
        return Err(vec![Issue::value(
            "",
            "expected a mapping with apiVersion, kind, metadata and spec",
        )]);
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(vec![Issue::value("/kind", "kind must be a string")]),
        None => {
            return Err(vec![Issue::value(
                "",
                "missing field `kind` (ChaosPolicy or HavocConfig)",
            )]);
        }
    };
    match (kind.as_str(), expect) {
        ("ChaosPolicy", _) => {
            normalize_faults(&mut value);
            let (policy, mut issues) = deserialize::<ChaosPolicy>(&mut value);
            let Some(policy) = policy else {
                return Err(issues);
            };
            for w in validate::policy_warnings(&policy) {
                let pos = if w.at_key {
                    locations.key(&w.pointer)
                } else {
                    locations.value(&w.pointer)
                };
                report.warnings.push(Diagnostic {
                    file: path.to_path_buf(),
                    pos,
                    message: w.message,
                });
            }
            match validate::validate_policy(&policy, path.to_path_buf(), ctx) {
                Ok(mut p) if issues.is_empty() => {
                    let pos = locations.value("/metadata/name");
                    p.line = pos.line;
                    report.policies.push((p, pos));
                    Ok(())
                }
                Ok(_) => Err(issues),
                Err(more) => {
                    issues.extend(more);
                    Err(issues)
                }
            }
        }
        ("HavocConfig", Expect::Any) => {
            let (cfg, mut issues) = deserialize::<HavocConfig>(&mut value);
            let Some(cfg) = cfg else {
                return Err(issues);
            };
            match validate::validate_config(&cfg) {
                Ok(c) if issues.is_empty() => {
                    report.configs.push(c);
                    Ok(())
                }
                Ok(_) => Err(issues),
                Err(more) => {
                    issues.extend(more);
                    Err(issues)
                }
            }
        }
        ("HavocConfig", Expect::Policies) => Err(vec![Issue::value(
            "/kind",
            "a HavocConfig does not belong among the policies; pass it with --config",
        )]),
        (other, _) => Err(vec![Issue::value(
            "/kind",
            format!("unknown kind {other:?}: expected ChaosPolicy or HavocConfig"),
        )]),
    }
}

/// `podEvict:` with no value means `podEvict: {}`: a fault with all defaults.
fn normalize_faults(value: &mut Value) {
    if let Some(Value::Object(fault)) = value.pointer_mut("/spec/fault") {
        for v in fault.values_mut() {
            if v.is_null() {
                *v = Value::Object(Default::default());
            }
        }
    }
}

/// How many unknown fields one document may report before giving up.
const MAX_SHAPE_ERRORS: usize = 32;

/// Deserializes a document, collecting every unknown field (each is reported, then
/// removed, and deserialization retried), and the first other shape error.
fn deserialize<T: DeserializeOwned>(value: &mut Value) -> (Option<T>, Vec<Issue>) {
    let mut issues = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, T>(&*value) {
            Ok(v) => return (Some(v), issues),
            Err(e) => {
                let pointer = to_pointer(e.path());
                let message = e.inner().to_string();
                let unknown = message.starts_with("unknown field");
                if message.starts_with("missing field") {
                    issues.push(Issue::key(pointer, message));
                    return (None, issues);
                }
                if unknown && issues.len() < MAX_SHAPE_ERRORS && remove(value, &pointer) {
                    issues.push(Issue::key(pointer, message));
                    continue;
                }
                issues.push(Issue::value(pointer, message));
                return (None, issues);
            }
        }
    }
}

fn to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut p = String::new();
    for seg in path {
        p = match seg {
            Segment::Seq { index } => push_pointer(&p, &index.to_string()),
            Segment::Map { key } => push_pointer(&p, key),
            Segment::Enum { variant } => push_pointer(&p, variant),
            Segment::Unknown => break,
        };
    }
    p
}

/// Removes the node at a JSON pointer; whether something was removed.
fn remove(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&key).is_some(),
        _ => false,
    }
}

/// Reads and validates the service configuration file.
pub fn load_config(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let report = load_paths(&[path.to_path_buf()], &Context::default(), Expect::Any);
    let mut file = report
        .files
        .into_iter()
        .next()
        .ok_or_else(|| vec![file_error(path, "no such file".to_string())])?;
    if !file.diagnostics.is_empty() {
        return Err(file.diagnostics);
    }
    if !file.policies.is_empty() || file.configs.len() != 1 {
        return Err(vec![file_error(
            path,
            "expected exactly one HavocConfig document".to_string(),
        )]);
    }
    Ok(file.configs.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread with a small stack (a tokio worker has 2 MiB).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow or panic")
    }

    fn messages(report: &FileReport) -> Vec<String> {
        report.diagnostics.iter().map(ToString::to_string).collect()
    }

    /// The files of the e2e test (`tests/e2e/tests/hostile.rs`), by name.
    fn hostile_files() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let bomb = fixtures::alias_bomb();
        vec![
            (
                "deep-block.yaml",
                format!("{}x\n", "- ".repeat(5_000)).into_bytes(),
                "deep-block.yaml:1:131: error: nesting deeper than 64 levels",
            ),
            (
                "deep-flow.yaml",
                format!("{}{}\n", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
                "deep-flow.yaml:1:256: error: nesting deeper than 64 levels",
            ),
            (
                "alias-bomb.yaml",
                bomb.into_bytes(),
                "alias-bomb.yaml:4:45: error: aliases expand to more than 10000 nodes or 256 KiB; policy files do not need that many",
            ),
            (
                "not-utf8.yaml",
                b"apiVersion: havoc.dev/v1alpha1\nkind: Chaos\xffPolicy\n".to_vec(),
                "not-utf8.yaml:2:12: error: file is not UTF-8 text: invalid byte 0xFF",
            ),
            (
                "huge.yaml",
                format!("# {}\n", "x".repeat(5 * 1024 * 1024)).into_bytes(),
                "huge.yaml:1:1: error: file is larger than 256 KiB; policy files are expected to be small",
            ),
        ]
    }

    #[test]
    fn event_verdicts_default_to_failures_and_started_is_not_one() {
        let c = fixtures::config().build();
        assert_eq!(c.event_verdicts, domain::DEFAULT_NOTIFY_ON.to_vec());
        let c = fixtures::config()
            .set("/events/verdicts", serde_json::json!(["passed"]))
            .build();
        assert_eq!(c.event_verdicts, [domain::NotifyOn::Passed]);
        let text = fixtures::config()
            .set(
                "/events/verdicts",
                serde_json::json!(["deviated", "started"]),
            )
            .text();
        let report = load_str(Path::new("c.yaml"), &text, &Context::default(), Expect::Any);
        let m = messages(&report);
        assert!(
            m.len() == 1 && m[0].contains("`started` is not a verdict"),
            "{m:?}"
        );
    }

    #[test]
    fn hostile_files_are_located_errors_and_the_other_files_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = fixtures::policy("good").namespaces(&["d"]).text();
        std::fs::write(dir.path().join("good.yaml"), good).expect("write");
        let files = hostile_files();
        for (name, bytes, _) in &files {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        let paths = vec![dir.path().to_path_buf()];
        let report =
            on_small_stack(move || load_paths(&paths, &Context::default(), Expect::Policies));
        let names: Vec<&str> = report.policies().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        for (name, _, want) in &files {
            let file = report
                .files
                .iter()
                .find(|f| f.path.ends_with(name))
                .expect("reported");
            let got = messages(file);
            let want = format!("{}/{want}", dir.path().display());
            assert_eq!(got, [want], "{name}");
        }
    }

    #[test]
    fn a_huge_file_or_device_is_read_no_further_than_the_limit() {
        // /dev/zero never ends: reading it whole would never return
        let err = read_file(Path::new("/dev/zero")).expect_err("too large");
        assert!(matches!(err, ReadError::TooLarge), "{err:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let at_limit = dir.path().join("at-limit.yaml");
        std::fs::write(&at_limit, vec![b'#'; MAX_FILE_BYTES]).expect("write");
        assert_eq!(
            read_file(&at_limit).map(|b| b.len()).ok(),
            Some(MAX_FILE_BYTES)
        );
        let err = read_file(&dir.path().join("missing.yaml")).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read file: "), "{err}");
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_located() {
        // the column counts characters: `été` is 3 of them in 5 bytes
        let bytes = [b"a: 1\n\xc3\xa9t\xc3\xa9: \"x".as_slice(), b"\xff\"\n"].concat();
        let err = file_text(&bytes).expect_err("not UTF-8");
        assert_eq!(err.pos(), Pos { line: 2, col: 8 });
        assert_eq!(err.to_string(), "file is not UTF-8 text: invalid byte 0xFF");
        let report = load_bytes(
            Path::new("f.yaml"),
            &bytes,
            &Context::default(),
            Expect::Any,
        );
        assert_eq!(
            messages(&report),
            ["f.yaml:2:8: error: file is not UTF-8 text: invalid byte 0xFF"]
        );
    }

    #[test]
    fn a_file_of_thousands_of_broken_documents_reports_the_first_hundred() {
        let text = "--- 1\n".repeat(150);
        let report = load_str(Path::new("m.yaml"), &text, &Context::default(), Expect::Any);
        let got = messages(&report);
        assert_eq!(got.len(), MAX_FILE_DIAGNOSTICS + 1);
        assert_eq!(
            got[0],
            "m.yaml:1:5: error: expected a mapping with apiVersion, kind, metadata and spec"
        );
        assert_eq!(
            got[MAX_FILE_DIAGNOSTICS],
            "m.yaml:101:5: error: too many problems: 50 more in this file not shown"
        );
    }

    #[test]
    fn the_deepest_accepted_document_goes_through_serde_on_a_small_stack() {
        // an unknown field holding 60 more levels: serde reads, reports and drops it
        let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let text = fixtures::policy("deep").namespaces(&["d"]).text().replacen(
            "\"spec\": {",
            &format!("\"spec\": {{\"deep\": {deep},"),
            1,
        );
        let report = on_small_stack(move || {
            load_str(
                Path::new("d.yaml"),
                &text,
                &Context::default(),
                Expect::Policies,
            )
        });
        let got = messages(&report);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("error: unknown field `deep`"), "{got:?}");
    }
}
