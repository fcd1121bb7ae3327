//! YAML with source positions.
//!
//! Policy files are parsed in two steps (see `mod.rs`): this module turns YAML text into
//! plain JSON values *plus* an index from JSON pointer (`/spec/schedule/cron`) to the line
//! and column of that key and value. serde then deserializes the JSON value, and every
//! later check (serde's own errors, semantic validation) reports a pointer that this index
//! turns back into `FILE:LINE:COL`.
//!
//! # Hostile input
//!
//! Policy files come from a directory that a running service re-reads, so a bad file must
//! cost bounded stack, memory and time, and end as a located error. The JSON values are
//! therefore built here, iteratively, from `saphyr-parser`'s event stream (a state machine
//! with an explicit stack) and not from a YAML tree: `saphyr`'s loader recurses once per
//! nesting level before any check could run, and 5,000 nested `- ` overflowed the stack.
//! Every limit is checked on the event that would cross it, before anything is built:
//!
//! - [`MAX_FILE_BYTES`]: larger files are refused before parsing;
//! - [`MAX_DEPTH`]: nesting (also through an alias) deeper than this stops the parse;
//! - [`MAX_NODES`]: nodes per file, aliases expanded, bound the memory of values and index;
//! - [`MAX_ALIAS_NODES`], [`MAX_ALIAS_BYTES`]: what aliases may add ("billion laughs").
//!
//! The only recursion left is over finished values (serde, `Clone`, `Drop`), which the
//! depth limit bounds to 64 levels.

use std::{borrow::Cow, collections::HashMap};

use saphyr::Scalar;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// Files larger than this are refused before parsing. A policy is about 1 KiB; the limit
/// keeps a malicious or mistaken file from costing much memory: the scanner reads a flow
/// collection (`[...]`) to its end before the first event, holding a token of ~200 bytes
/// for every one or two bytes of it, so 256 KiB can cost ~50 MB for a moment.
pub const MAX_FILE_BYTES: usize = 256 * 1024;

/// Nesting deeper than this is refused (policies are a handful of levels deep).
pub const MAX_DEPTH: usize = 64;

/// Nodes (scalars, keys, collections, aliases expanded) in one file. A policy has about
/// 50; the limit bounds the values and positions of a file of tiny nodes to ~20 MB.
pub const MAX_NODES: usize = 50_000;

/// Nodes that aliases may add to one file by expansion.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// Scalar bytes that aliases may add to one file by expansion.
pub const MAX_ALIAS_BYTES: usize = MAX_FILE_BYTES;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// The start of a file: where problems of the whole file are reported.
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(m: &Marker) -> Self {
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// Where one node sits: its key (when it is a mapping value) and its value.
#[derive(Debug, Clone, Copy)]
struct Place {
    key: Option<Pos>,
    value: Pos,
}

/// How a node hangs below its parent.
#[derive(Debug, Clone)]
enum Segment {
    Root,
    Index(usize),
    Key(String),
}

#[derive(Debug, Clone)]
struct Located {
    place: Place,
    parent: Option<usize>,
    segment: Segment,
    children: Vec<usize>,
    /// An alias: the nodes below it are those of the anchored node.
    link: Option<usize>,
}

/// Positions of every node of one document, looked up by JSON pointer.
///
/// A tree (each node stores its own segment once) rather than a map from full pointers:
/// a map costs the sum of all pointer lengths, quadratic for deep keys with many siblings.
/// An alias shares the anchored node's positions instead of copying them.
#[derive(Debug, Default, Clone)]
pub struct Locations {
    nodes: Vec<Located>,
}

impl Locations {
    /// Position of the value at `pointer`, or of its nearest existing ancestor.
    pub fn value(&self, pointer: &str) -> Pos {
        self.nearest(pointer).value
    }

    /// Position of the key at `pointer` (falls back to the value, then to ancestors).
    pub fn key(&self, pointer: &str) -> Pos {
        let place = self.nearest(pointer);
        place.key.unwrap_or(place.value)
    }

    /// Whether a node exists at exactly `pointer`.
    pub fn contains(&self, pointer: &str) -> bool {
        let (_, rest) = self.walk(pointer);
        rest.is_none() && !self.nodes.is_empty()
    }

    fn nearest(&self, pointer: &str) -> Place {
        match self.walk(pointer) {
            (Some(at), _) => self.nodes[at].place,
            (None, _) => Place {
                key: None,
                value: Pos::START,
            },
        }
    }

    /// The deepest node on `pointer`'s path, and the part of the pointer not found.
    fn walk<'p>(&self, pointer: &'p str) -> (Option<usize>, Option<&'p str>) {
        if self.nodes.is_empty() {
            return (None, Some(pointer));
        }
        let mut at = 0;
        let mut rest = pointer;
        while let Some(tail) = rest.strip_prefix('/') {
            let (segment, next) = tail.find('/').map_or((tail, ""), |i| tail.split_at(i));
            match self.child(at, &unescape(segment)) {
                Some(c) => at = c,
                None => return (Some(at), Some(rest)),
            }
            rest = next;
        }
        (Some(at), None)
    }

    fn child(&self, at: usize, segment: &str) -> Option<usize> {
        let node = &self.nodes[self.nodes[at].link.unwrap_or(at)];
        if let Ok(i) = segment.parse::<usize>()
            && let Some(&c) = node.children.get(i)
            && matches!(self.nodes[c].segment, Segment::Index(j) if j == i)
        {
            return Some(c);
        }
        node.children
            .iter()
            .copied()
            .find(|&c| matches!(&self.nodes[c].segment, Segment::Key(k) if k == segment))
    }

    fn push(&mut self, place: Place, parent: Option<usize>, segment: Segment) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Located {
            place,
            parent,
            segment,
            children: Vec::new(),
            link: None,
        });
        if let Some(p) = parent {
            self.nodes[p].children.push(id);
        }
        id
    }
}

fn unescape(segment: &str) -> Cow<'_, str> {
    if segment.contains('~') {
        Cow::Owned(segment.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(segment)
    }
}

/// One YAML document converted to JSON, with its positions.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub locations: Locations,
}

/// What is wrong with a YAML text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid YAML: {0}")]
    Syntax(String),
    #[error(
        "file is larger than {} KiB; policy files are expected to be small",
        MAX_FILE_BYTES / 1024
    )]
    TooLarge,
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("more than {MAX_NODES} YAML nodes in one file; policy files are expected to be small")]
    TooManyNodes,
    #[error(
        "aliases expand to more than {MAX_ALIAS_NODES} nodes or {} KiB; policy files do not need that many",
        MAX_ALIAS_BYTES / 1024
    )]
    AliasExpansion,
    #[error("alias to an anchor that is not complete before it in this document")]
    UnknownAlias,
    #[error("mapping keys must be plain scalars")]
    NonScalarKey,
    #[error("duplicate key {0:?} in mapping")]
    DuplicateKey(String),
    #[error("{value:?} is not a valid {tag}")]
    BadTag { tag: String, value: String },
}

/// A located problem found while reading YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {problem}", pos.line, pos.col)]
pub struct YamlError {
    pub pos: Pos,
    pub problem: Problem,
}

impl YamlError {
    fn at(marker: &Marker, problem: Problem) -> Self {
        YamlError {
            pos: Pos::from_marker(marker),
            problem,
        }
    }
}

/// Appends one JSON-pointer segment (RFC 6901 escaping).
pub fn push_pointer(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + segment.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Parses every document of a YAML stream. Empty documents are dropped. A syntax error or a
/// crossed limit fails the whole stream (nothing after it is read or can be trusted);
/// problems inside one document (non-scalar or duplicate keys, a bad alias or tag) fail
/// only that document.
pub fn parse_stream(text: &str) -> Result<Vec<Result<Document, YamlError>>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            pos: Pos::START,
            problem: Problem::TooLarge,
        });
    }
    let mut stream = Stream::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            // The scanner's own limit: 255 flow levels, met while it reads ahead.
            let problem = match e.info() {
                "recursion limit exceeded" => Problem::TooDeep,
                info => Problem::Syntax(info.to_string()),
            };
            YamlError::at(e.marker(), problem)
        })?;
        stream.on_event(event, span)?;
    }
    Ok(stream.docs)
}

/// What a finished node adds to its parent's size.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
    /// Levels below the node: 0 for a scalar or an empty collection.
    height: usize,
}

impl Size {
    fn add(&mut self, child: Size) {
        self.nodes += child.nodes;
        self.bytes += child.bytes;
        self.height = self.height.max(child.height + 1);
    }
}

#[derive(Debug)]
enum Container {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<(String, Pos)>,
    },
}

/// An open collection.
#[derive(Debug)]
struct Frame {
    container: Container,
    /// Its node in [`Locations`].
    loc: usize,
    anchor: usize,
    size: Size,
}

/// An anchored node, for its aliases.
#[derive(Debug)]
struct Anchor {
    size: Size,
    node: Anchored,
}

#[derive(Debug, Clone)]
enum Anchored {
    /// A scalar's value (an anchored key is not in the value tree).
    Scalar(Value),
    /// A collection's node in [`Locations`]: its value is looked up in the tree when an
    /// alias needs it, so that anchoring copies nothing.
    Collection(usize),
}

/// The document being read.
#[derive(Debug, Default)]
struct Doc {
    frames: Vec<Frame>,
    locations: Locations,
    anchors: HashMap<usize, Anchor>,
    root: Option<Value>,
    /// The first problem; the rest of the document is read only for its nesting.
    failed: Option<(YamlError, usize)>,
}

/// Turns events into documents, checking every limit before building anything.
#[derive(Debug, Default)]
struct Stream {
    docs: Vec<Result<Document, YamlError>>,
    doc: Doc,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
}

impl Stream {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let mark = span.start;
        match event {
            Event::DocumentStart(_) => self.doc = Doc::default(),
            Event::DocumentEnd => self.end_document(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::Scalar(text, style, anchor, tag) => {
                self.enter(&mark, 0)?;
                if self.doc.failed.is_some() {
                    return Ok(());
                }
                self.count(1, &mark)?;
                let bytes = text.len();
                let value = match scalar(text, style, tag.as_ref()) {
                    Ok(v) => v,
                    Err(problem) => return self.fail(YamlError::at(&mark, problem), 0),
                };
                let size = Size {
                    nodes: 1,
                    bytes,
                    height: 0,
                };
                self.node(value, size, anchor, &mark, None)?;
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.enter(&mark, 0)?;
                if let Some((_, depth)) = &mut self.doc.failed {
                    *depth += 1;
                    return Ok(());
                }
                self.count(1, &mark)?;
                if self.expects_key() {
                    return self.fail(YamlError::at(&mark, Problem::NonScalarKey), 1);
                }
                let container = if matches!(event, Event::SequenceStart(..)) {
                    Container::Seq(Vec::new())
                } else {
                    Container::Map {
                        map: Map::new(),
                        key: None,
                    }
                };
                let loc = self.locate(&mark);
                self.doc.frames.push(Frame {
                    container,
                    loc,
                    anchor,
                    size: Size {
                        nodes: 1,
                        ..Size::default()
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((_, depth)) = &mut self.doc.failed {
                    *depth = depth.saturating_sub(1);
                    return Ok(());
                }
                let Some(frame) = self.doc.frames.pop() else {
                    return Ok(());
                };
                let value = match frame.container {
                    Container::Seq(items) => Value::Array(items),
                    Container::Map { map, .. } => Value::Object(map),
                };
                self.finish(value, frame.size, frame.anchor, frame.loc);
            }
            Event::Alias(id) => {
                if self.doc.failed.is_some() {
                    return self.enter(&mark, 0);
                }
                let Some(anchor) = self.doc.anchors.get(&id) else {
                    return self.fail(YamlError::at(&mark, Problem::UnknownAlias), 0);
                };
                let (size, anchored) = (anchor.size, anchor.node.clone());
                self.enter(&mark, size.height)?;
                self.alias_nodes += size.nodes;
                self.alias_bytes += size.bytes;
                if self.alias_nodes > MAX_ALIAS_NODES || self.alias_bytes > MAX_ALIAS_BYTES {
                    return Err(YamlError::at(&mark, Problem::AliasExpansion));
                }
                self.count(size.nodes, &mark)?;
                let (value, link) = match anchored {
                    Anchored::Scalar(v) => (v, None),
                    Anchored::Collection(target) => match self.anchored_value(target) {
                        Some(v) => (v, Some(target)),
                        None => return self.fail(YamlError::at(&mark, Problem::UnknownAlias), 0),
                    },
                };
                self.node(value, size, 0, &mark, link)?;
            }
        }
        Ok(())
    }

    /// A node starts at the current depth with `height` levels below it.
    fn enter(&self, mark: &Marker, height: usize) -> Result<(), YamlError> {
        let depth = match &self.doc.failed {
            Some((_, depth)) => *depth,
            None => self.doc.frames.len(),
        };
        check_depth(depth, height, mark)
    }

    fn count(&mut self, nodes: usize, mark: &Marker) -> Result<(), YamlError> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(YamlError::at(mark, Problem::TooManyNodes));
        }
        Ok(())
    }

    fn expects_key(&self) -> bool {
        matches!(
            self.doc.frames.last(),
            Some(Frame {
                container: Container::Map { key: None, .. },
                ..
            })
        )
    }

    /// The document has a problem: keep it, drop what was built, and from now on only
    /// follow the nesting (`open`: collections the failing event opened).
    fn fail(&mut self, error: YamlError, open: usize) -> Result<(), YamlError> {
        let depth = self.doc.frames.len() + open;
        self.doc.frames.clear();
        self.doc.anchors.clear();
        self.doc.failed = Some((error, depth));
        Ok(())
    }

    /// A finished scalar or alias: a key, or a value placed in its parent.
    fn node(
        &mut self,
        value: Value,
        size: Size,
        anchor: usize,
        mark: &Marker,
        link: Option<usize>,
    ) -> Result<(), YamlError> {
        if self.expects_key() {
            let Some(name) = key_text(&value) else {
                return self.fail(YamlError::at(mark, Problem::NonScalarKey), 0);
            };
            let pos = Pos::from_marker(mark);
            if anchor > 0 {
                let node = Anchored::Scalar(value);
                self.doc.anchors.insert(anchor, Anchor { size, node });
            }
            let Some(Frame {
                container: Container::Map { map, key },
                size: parent,
                ..
            }) = self.doc.frames.last_mut()
            else {
                return Ok(());
            };
            if map.contains_key(&name) {
                return self.fail(YamlError::at(mark, Problem::DuplicateKey(name)), 0);
            }
            parent.nodes += size.nodes;
            parent.bytes += size.bytes;
            *key = Some((name, pos));
            return Ok(());
        }
        let loc = self.locate(mark);
        self.doc.locations.nodes[loc].link = link;
        self.finish(value, size, anchor, loc);
        Ok(())
    }

    /// Adds the index node for a value starting at `mark` below the open collection.
    fn locate(&mut self, mark: &Marker) -> usize {
        let value = Pos::from_marker(mark);
        let (place, parent, segment) = match self.doc.frames.last() {
            None => (Place { key: None, value }, None, Segment::Root),
            Some(frame) => match &frame.container {
                Container::Seq(items) => (
                    Place { key: None, value },
                    Some(frame.loc),
                    Segment::Index(items.len()),
                ),
                Container::Map { key, .. } => match key {
                    Some((name, pos)) => (
                        Place {
                            key: Some(*pos),
                            value,
                        },
                        Some(frame.loc),
                        Segment::Key(name.clone()),
                    ),
                    // Keys are located through their value: `node` never asks for them.
                    None => (Place { key: None, value }, None, Segment::Root),
                },
            },
        };
        self.doc.locations.push(place, parent, segment)
    }

    /// A finished value: anchored if it has an anchor, then placed in its parent.
    fn finish(&mut self, value: Value, size: Size, anchor: usize, loc: usize) {
        if anchor > 0 {
            let node = if value.is_array() || value.is_object() {
                Anchored::Collection(loc)
            } else {
                Anchored::Scalar(value.clone())
            };
            self.doc.anchors.insert(anchor, Anchor { size, node });
        }
        match self.doc.frames.last_mut() {
            None => self.doc.root = Some(value),
            Some(parent) => {
                parent.size.add(size);
                match &mut parent.container {
                    Container::Seq(items) => items.push(value),
                    Container::Map { map, key } => {
                        if let Some((name, _)) = key.take() {
                            map.insert(name, value);
                        }
                    }
                }
            }
        }
    }

    /// A finished anchored collection, found in the tree being built: below the innermost
    /// open collection that contains it.
    fn anchored_value(&self, loc: usize) -> Option<Value> {
        let nodes = &self.doc.locations.nodes;
        let mut path = Vec::new();
        let mut at = loc;
        let frame = loop {
            if let Some(f) = self.doc.frames.iter().rev().find(|f| f.loc == at) {
                break f;
            }
            path.push(&nodes[at].segment);
            at = nodes[at].parent?;
        };
        let mut segments = path.into_iter().rev();
        let mut value = match (&frame.container, segments.next()?) {
            (Container::Seq(items), Segment::Index(i)) => items.get(*i)?,
            (Container::Map { map, .. }, Segment::Key(k)) => map.get(k)?,
            _ => return None,
        };
        for segment in segments {
            value = match (value, segment) {
                (Value::Array(items), Segment::Index(i)) => items.get(*i)?,
                (Value::Object(map), Segment::Key(k)) => map.get(k)?,
                _ => return None,
            };
        }
        Some(value.clone())
    }

    fn end_document(&mut self) {
        let doc = std::mem::take(&mut self.doc);
        if let Some((error, _)) = doc.failed {
            self.docs.push(Err(error));
            return;
        }
        match doc.root {
            None | Some(Value::Null) => {}
            Some(value) => self.docs.push(Ok(Document {
                value,
                locations: doc.locations,
            })),
        }
    }
}

fn check_depth(depth: usize, height: usize, mark: &Marker) -> Result<(), YamlError> {
    if depth + height > MAX_DEPTH {
        return Err(YamlError::at(mark, Problem::TooDeep));
    }
    Ok(())
}

/// A scalar resolved by the YAML 1.2 core schema (as `saphyr` does); a core tag that does
/// not fit (`!!int abc`) is a problem, other tags are ignored.
fn scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Cow<'_, Tag>>,
) -> Result<Value, Problem> {
    match Scalar::parse_from_cow_and_metadata(text.clone(), style, tag) {
        Some(s) => Ok(scalar_to_json(&s)),
        None => Err(Problem::BadTag {
            tag: tag.map(|t| format!("!!{}", t.suffix)).unwrap_or_default(),
            value: text.into_owned(),
        }),
    }
}

fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("null".to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn scalar_to_json(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Document {
        let mut docs = parse_stream(text).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0).expect("converts")
    }

    /// The stream-level error of `text`.
    fn refused(text: &str) -> YamlError {
        parse_stream(text).expect_err("refused")
    }

    /// The error of the only document of `text`.
    fn doc_error(text: &str) -> YamlError {
        let mut docs = parse_stream(text).expect("the stream parses");
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0).expect_err("the document is refused")
    }

    fn pointer(segments: &[&str]) -> String {
        segments
            .iter()
            .fold(String::new(), |p, s| push_pointer(&p, s))
    }

    /// Runs `f` on a thread with a small stack: parsing must not need more, whatever the
    /// input (a tokio worker has 2 MiB, and the old parser overflowed 8 MiB).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow or panic")
    }

    #[test]
    fn positions_of_keys_and_values_are_one_based() {
        let doc = one("a:\n  b: 1\n  list:\n    - x\n    - \"y\"\n");
        assert_eq!(doc.locations.key("/a/b"), Pos { line: 2, col: 3 });
        assert_eq!(doc.locations.value("/a/b"), Pos { line: 2, col: 6 });
        assert_eq!(doc.locations.value("/a/list/1"), Pos { line: 5, col: 7 });
        // a missing leaf resolves to its nearest ancestor
        assert_eq!(doc.locations.key("/a/missing"), Pos { line: 1, col: 1 });
        assert_eq!(doc.locations.key("/a/list/7"), Pos { line: 3, col: 3 });
        assert!(doc.locations.contains("/a/list/1"));
        assert!(!doc.locations.contains("/a/list/2"));
        assert_eq!(doc.value["a"]["list"][1], "y");
    }

    #[test]
    fn pointer_segments_are_escaped() {
        let doc = one("labels:\n  app.kubernetes.io/name: x\n  a~b: y\n");
        let p = push_pointer("/labels", "app.kubernetes.io/name");
        assert_eq!(p, "/labels/app.kubernetes.io~1name");
        assert_eq!(doc.locations.value(&p), Pos { line: 2, col: 27 });
        assert_eq!(doc.locations.value("/labels/a~0b"), Pos { line: 3, col: 8 });
    }

    #[test]
    fn scalars_follow_yaml_1_2_core_schema() {
        let doc =
            one("t: 10:00\nn: 5\nb: true\ns: '5'\nd: 12-24\nno: no\nf: 1.5\nz: ~\ni: !!str 7\n");
        assert_eq!(doc.value["t"], "10:00");
        assert_eq!(doc.value["n"], 5);
        assert_eq!(doc.value["b"], true);
        assert_eq!(doc.value["s"], "5");
        assert_eq!(doc.value["d"], "12-24");
        assert_eq!(doc.value["no"], "no");
        assert_eq!(doc.value["f"], 1.5);
        assert_eq!(doc.value["z"], Value::Null);
        assert_eq!(doc.value["i"], "7");
    }

    #[test]
    fn a_core_tag_that_does_not_fit_is_a_located_error() {
        let err = doc_error("a: 1\nb: !!int abc\n");
        assert_eq!(err.pos, Pos { line: 2, col: 4 });
        assert_eq!(err.to_string(), "2:4: \"abc\" is not a valid !!int");
        // other tags are ignored
        assert_eq!(one("a: !mine 5\n").value["a"], 5);
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = refused("a: 1\nb: [1, 2\nc: 3\n");
        assert!(err.pos.line >= 2, "{err:?}");
        assert!(matches!(err.problem, Problem::Syntax(_)), "{err:?}");
        assert!(err.problem.to_string().starts_with("invalid YAML"));
    }

    #[test]
    fn duplicate_keys_fail_their_document_only() {
        let docs = parse_stream("a: 1\na: 2\n---\nb: 2\n").expect("parses");
        assert_eq!(docs.len(), 2);
        let err = docs[0].as_ref().expect_err("duplicate");
        assert_eq!(err.pos, Pos { line: 2, col: 1 });
        assert_eq!(err.problem, Problem::DuplicateKey("a".to_string()));
        assert_eq!(docs[1].as_ref().expect("valid").value["b"], 2);
    }

    #[test]
    fn collections_as_keys_are_located_errors() {
        let err = doc_error("a: 1\n? [x, y]\n: z\n");
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 2, col: 3 }, Problem::NonScalarKey)
        );
        let err = doc_error("{a: 1, {b: c}: d}\n");
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 1, col: 8 }, Problem::NonScalarKey)
        );
        // an alias to a collection, used as a key
        let err = doc_error("a: &x [1]\n*x : 2\n");
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 2, col: 1 }, Problem::NonScalarKey)
        );
    }

    #[test]
    fn multiple_documents_and_empty_ones() {
        let docs = parse_stream("---\na: 1\n---\n---\nb: 2\n--- ~\n").expect("parses");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn many_documents_cost_no_more_than_their_text() {
        let text = "--- {a: 1}\n".repeat(10_000);
        let docs = parse_stream(&text).expect("parses");
        assert_eq!(docs.len(), 10_000);
        assert!(docs.iter().all(Result::is_ok));
    }

    // --- nesting: the 5,000-level file that overflowed the stack, and its relatives

    #[test]
    fn deep_block_nesting_is_refused_where_it_crosses_the_limit() {
        for levels in [5_000, 100_000] {
            let text = format!("{}x\n", "- ".repeat(levels));
            let err = on_small_stack(move || refused(&text));
            // The 65th `- ` opens the 65th sequence, at depth 64: allowed. The 66th is
            // one too deep.
            assert_eq!(err.problem, Problem::TooDeep, "{levels}: {err:?}");
            assert_eq!(err.pos, Pos { line: 1, col: 131 }, "{levels}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused() {
        // Inside a flow collection the scanner reads ahead to the end of a possible key,
        // up to its own limit of 255 flow levels: deeper is refused where it stops.
        for text in [
            format!("{}{}\n", "[".repeat(5_000), "]".repeat(5_000)),
            format!("{}{}\n", "[\n".repeat(50_000), "]".repeat(50_000)),
            format!("{}1{}\n", "{a: ".repeat(5_000), "}".repeat(5_000)),
        ] {
            let err = on_small_stack(move || refused(&text));
            assert_eq!(err.problem, Problem::TooDeep, "{err:?}");
        }
        // between 65 and 255 levels: the depth limit, at the 66th level
        let text = format!("{}{}\n", "[".repeat(200), "]".repeat(200));
        let err = on_small_stack(move || refused(&text));
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 1, col: 66 }, Problem::TooDeep)
        );
        // the 65th mapping is at depth 64: its key is one level too deep
        let text = format!("{}1{}\n", "{a: ".repeat(200), "}".repeat(200));
        let err = on_small_stack(move || refused(&text));
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 1, col: 258 }, Problem::TooDeep)
        );
    }

    #[test]
    fn mixed_block_and_flow_nesting_is_refused() {
        let text = format!("{}{}{}\n", "- ".repeat(40), "[".repeat(40), "]".repeat(40));
        let err = refused(&text);
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 1, col: 106 }, Problem::TooDeep)
        );
        let mut text = String::new();
        for i in 0..50 {
            text.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
        }
        text.push_str(&format!(
            "{}- {}1{}\n",
            "  ".repeat(50),
            "[".repeat(20),
            "]".repeat(20)
        ));
        let err = refused(&text);
        assert_eq!(err.problem, Problem::TooDeep, "{err:?}");
        assert_eq!(err.pos.line, 51, "{err:?}");
    }

    #[test]
    fn nesting_just_under_the_limit_is_accepted_with_positions() {
        let text = format!("{}x\n", "- ".repeat(MAX_DEPTH));
        let doc = on_small_stack(move || one(&text));
        let at = pointer(&["0"; MAX_DEPTH]);
        assert_eq!(doc.value.pointer(&at), Some(&Value::from("x")));
        assert_eq!(doc.locations.value(&at), Pos { line: 1, col: 129 });

        // mappings in block style, then flow: 64 levels in all, with a key on each
        let mut text = String::new();
        let mut segments = Vec::new();
        for i in 0..60 {
            text.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
            segments.push(format!("k{i}"));
        }
        text.push_str(&format!("{}last: [[[x, y]]]\n", "  ".repeat(60)));
        let doc = on_small_stack(move || one(&text));
        segments.extend(["last", "0", "0", "1"].map(String::from));
        let at = pointer(&segments.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(doc.value.pointer(&at), Some(&Value::from("y")));
        assert_eq!(doc.locations.value(&at), Pos { line: 61, col: 133 });
        let key = pointer(
            &segments[..61]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(doc.locations.key(&key), Pos { line: 61, col: 121 });
        // one level more is refused
        let text = format!("{}x\n", "- ".repeat(MAX_DEPTH + 1));
        assert_eq!(refused(&text).problem, Problem::TooDeep);
    }

    // --- anchors and aliases

    #[test]
    fn aliases_expand_and_point_at_the_anchored_text() {
        let doc = one("base: &b\n  kind: Pod\n  names: [a, b]\nother: *b\nk: &k key\n*k : v\n");
        assert_eq!(doc.value["other"], doc.value["base"]);
        assert_eq!(doc.value["key"], "v");
        // the alias itself is where it is written, what is below it where the anchor is
        assert_eq!(doc.locations.value("/other"), Pos { line: 4, col: 8 });
        assert_eq!(doc.locations.key("/other"), Pos { line: 4, col: 1 });
        assert_eq!(doc.locations.value("/other/kind"), Pos { line: 2, col: 9 });
        assert_eq!(
            doc.locations.value("/other/names/1"),
            Pos { line: 3, col: 14 }
        );
        assert_eq!(
            doc.locations.value("/other/missing"),
            Pos { line: 4, col: 8 }
        );
    }

    #[test]
    fn an_alias_to_an_unfinished_or_foreign_anchor_is_an_error() {
        let err = doc_error("a: &x [1, *x]\n");
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 1, col: 11 }, Problem::UnknownAlias)
        );
        // anchors do not cross documents
        let docs = parse_stream("a: &x 1\n---\nb: *x\n").expect("parses");
        assert!(docs[0].is_ok());
        assert_eq!(
            docs[1].as_ref().expect_err("foreign").problem,
            Problem::UnknownAlias
        );
    }

    #[test]
    fn alias_bombs_are_refused_early() {
        let text = crate::policy::fixtures::alias_bomb();
        let err = on_small_stack(move || refused(&text));
        assert_eq!(err.problem, Problem::AliasExpansion);
        // l0 adds 10 * 11 nodes, l1 10 * 111: 1,220; the 8th alias of l1 in l2 crosses 10,000
        assert_eq!(err.pos, Pos { line: 4, col: 45 }, "{err:?}");
    }

    #[test]
    fn aliases_of_long_scalars_are_counted_by_bytes() {
        let big = "x".repeat(100 * 1024);
        let text = format!("a: &a {big}\nb: [*a, *a, *a]\n");
        let err = refused(&text);
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 2, col: 13 }, Problem::AliasExpansion)
        );
        let text = format!("a: &a {big}\nb: [*a, *a]\n");
        assert_eq!(
            one(&text).value["b"][1].as_str().map(str::len),
            Some(big.len())
        );
    }

    #[test]
    fn an_alias_counts_its_depth() {
        // 40 levels anchored, used 30 levels down: 70 levels
        let anchored = format!("{}x{}", "[".repeat(40), "]".repeat(40));
        let used = format!("{}*a{}", "[".repeat(30), "]".repeat(30));
        let err = refused(&format!("a: &a {anchored}\nb: {used}\n"));
        assert_eq!(
            (err.pos, err.problem),
            (Pos { line: 2, col: 34 }, Problem::TooDeep)
        );
        let used = format!("{}*a{}", "[".repeat(20), "]".repeat(20));
        let doc = one(&format!("a: &a {anchored}\nb: {used}\n"));
        assert_eq!(
            doc.value["b"].pointer(&pointer(&["0"; 60])),
            Some(&Value::from("x"))
        );
    }

    // --- size

    #[test]
    fn too_many_nodes_are_refused() {
        let text = format!("[{}]\n", vec!["1"; MAX_NODES].join(","));
        let err = refused(&text);
        assert_eq!(err.problem, Problem::TooManyNodes);
        let text = format!("[{}]\n", vec!["1"; MAX_NODES - 1].join(","));
        assert!(parse_stream(&text).is_ok());
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_parsing() {
        let text = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES));
        let err = refused(&text);
        assert_eq!((err.pos, err.problem), (Pos::START, Problem::TooLarge));
        // a long scalar under the limit is fine
        let text = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES - 16));
        assert_eq!(
            one(&text).value["a"].as_str().map(str::len),
            Some(MAX_FILE_BYTES - 16)
        );
    }
}
