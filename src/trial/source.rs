//! YAML sources with positions: every field path (`runs.users.to`, `tasks[2]`) mapped to the
//! line and column where it is written, and diagnostics that name file, line, column and field.
//!
//! Why two readers: `serde_yaml` gives us typed, strict deserialization, but its `Value` keeps no
//! positions; `yaml-rust2`'s event parser does. We read positions once with the latter and use
//! them for every error, including semantic ones found after deserialization.
//!
//! Collecting *all* errors of a file: serde stops at the first error, so [`deserialize_all`]
//! removes the offending node from the tree and deserializes again, until the document is clean
//! (then semantic validation still runs on the repaired model) or no progress is possible.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in a source file, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem found in a trial or environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// Where it is; `None` when the problem has no place (a file that cannot be read).
    pub position: Option<Position>,
    /// The dotted field path, e.g. `runs.users.to`; empty for the whole document.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// All the problems of one or more files; the error type of loading and validating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A YAML document read from a file, with the position of every field path.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file it came from.
    pub file: PathBuf,
    /// The raw text.
    pub text: String,
    positions: HashMap<String, Position>,
}

impl Source {
    /// Reads and indexes a file.
    pub fn read(file: &Path) -> Result<Source, Diagnostics> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                file: file.to_path_buf(),
                position: None,
                field: String::new(),
                message: format!("cannot read file: {e}"),
                hint: None,
            }])
        })?;
        Ok(Source::from_text(file, text))
    }

    /// Indexes text as if it came from `file` (used for embedded trials and tests).
    pub fn from_text(file: &Path, text: String) -> Source {
        let mut index = PathIndex::default();
        // A syntax error is reported by serde_yaml with its position; the index is best effort.
        let _ = Parser::new_from_str(&text).load(&mut index, false);
        Source {
            file: file.to_path_buf(),
            text,
            positions: index.positions,
        }
    }

    /// The position of a field path, or of its nearest indexed ancestor.
    pub fn position_of(&self, field: &str) -> Option<Position> {
        let mut path = field;
        loop {
            if let Some(p) = self.positions.get(path) {
                return Some(*p);
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.positions.get("").copied(),
            }
        }
    }

    /// A diagnostic placed at `field`.
    pub fn diagnostic(
        &self,
        field: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            position: self.position_of(field),
            field: field.to_string(),
            message: message.into(),
            hint,
        }
    }
}

/// Builds the path → position map from the parser's marked events.
#[derive(Default)]
struct PathIndex {
    positions: HashMap<String, Position>,
    stack: Vec<Frame>,
}

enum Frame {
    /// In a mapping; `key` is set once the key of the current entry has been read.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn to_position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl PathIndex {
    /// The path of the node that starts now, or `None` when it is a mapping key.
    fn node_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key: record the key's own position for the field.
                    let k = scalar.unwrap_or("").to_string();
                    let full = join(path, &k);
                    self.positions.entry(full).or_insert(to_position(mark));
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(k);
                    }
                    None
                }
            },
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for PathIndex {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(p) = self.node_path(Some(&value), mark) {
                    self.positions.entry(p).or_insert(to_position(mark));
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path(None, mark) {
                    self.positions.entry(p).or_insert(to_position(mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = match self.node_path(None, mark) {
                    Some(p) => p,
                    // A complex key: index its content under a placeholder.
                    None => "?".to_string(),
                };
                self.positions
                    .entry(path.clone())
                    .or_insert(to_position(mark));
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Formats a serde path the way our diagnostics name fields (`a.b[2].c`).
fn field_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Removes the node at a field path; true when something was removed.
fn remove_at(value: &mut serde_yaml::Value, field: &str) -> bool {
    let (parent, last) = match field.rfind(['.', '[']) {
        Some(i) => (&field[..i], &field[i..]),
        None => ("", field),
    };
    let Some(parent_value) = lookup_mut(value, parent) else {
        return false;
    };
    if let Some(idx) = last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        if let (Ok(i), Some(seq)) = (idx.parse::<usize>(), parent_value.as_sequence_mut()) {
            if i < seq.len() {
                seq.remove(i);
                return true;
            }
        }
        return false;
    }
    let key = last.trim_start_matches('.');
    parent_value
        .as_mapping_mut()
        .and_then(|m| m.remove(key))
        .is_some()
}

fn lookup_mut<'a>(
    value: &'a mut serde_yaml::Value,
    field: &str,
) -> Option<&'a mut serde_yaml::Value> {
    if field.is_empty() {
        return Some(value);
    }
    let mut cur = value;
    for part in split_path(field) {
        cur = match part {
            PathPart::Key(k) => cur.as_mapping_mut()?.get_mut(k)?,
            PathPart::Index(i) => cur.as_sequence_mut()?.get_mut(i)?,
        };
    }
    Some(cur)
}

enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(field: &str) -> Vec<PathPart<'_>> {
    let mut parts = Vec::new();
    for dotted in field.split('.') {
        let mut rest = dotted;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                parts.push(PathPart::Key(&rest[..i]));
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    parts.push(PathPart::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else if !rest.is_empty() {
            parts.push(PathPart::Key(rest));
        }
    }
    parts
}

/// Hints for the messages serde produces, so users know what to write instead.
fn hint_for(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (unknown, expected) = rest.split_once("`, expected ")?;
        return Some(match closest(unknown, expected) {
            Some(near) => format!("did you mean `{near}`? allowed here: {expected}"),
            None => format!("allowed here: {expected}"),
        });
    }
    if message.starts_with("unknown variant") {
        return message
            .split_once("expected ")
            .map(|(_, e)| format!("allowed values: {e}"));
    }
    None
}

/// The allowed name (out of serde's "`a`, `b` or `c`" list) nearest to a misspelt one: at most
/// a third of its letters apart.
fn closest<'a>(unknown: &str, expected: &'a str) -> Option<&'a str> {
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(unknown, name), name))
        .filter(|(d, name)| *d > 0 && *d * 3 <= name.len().max(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Serde's wording made a user's: Rust type names become what to write, and an untagged
/// enum's "did not match any variant" names the shapes the field accepts.
fn plain_message(message: &str) -> String {
    if let Some(name) = message.strip_prefix("data did not match any variant of untagged enum ") {
        return match super::model::shapes_of(name.trim()) {
            Some(shapes) => format!("not a form this field takes: write {shapes}"),
            None => "not a form this field takes".to_string(),
        };
    }
    // The allowed names go in the hint, once.
    if let Some((unknown, _)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once("`, expected "))
    {
        return format!("unknown field `{unknown}`");
    }
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected u32", "expected a whole number ≥ 0"),
        ("expected usize", "expected a whole number ≥ 0"),
        ("expected u16", "expected a whole number ≥ 0"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(at) = out.find(rust) {
            if !out[at + rust.len()..].starts_with(|c: char| c.is_alphanumeric()) {
                out.replace_range(at..at + rust.len(), plain);
            }
        }
    }
    out
}

/// Drops the problems semantic validation found in a part of the document that did not
/// deserialize (removed to find further errors, its absence is not a second mistake): those
/// in `file` at `fields` or on a path above or below one of them. Whole-document problems
/// stay, as do those of other files (the environment a trial names).
pub fn drop_echoes(diagnostics: &mut Vec<Diagnostic>, file: &Path, from: usize, fields: &[String]) {
    let related = |a: &str, b: &str| {
        let below = |long: &str, short: &str| {
            long.strip_prefix(short)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        below(a, b) || below(b, a)
    };
    let mut i = 0;
    diagnostics.retain(|d| {
        i += 1;
        i <= from
            || d.file != file
            || d.field.is_empty()
            || !fields.iter().any(|f| related(&d.field, f))
    });
}

/// Deserializes a document strictly and collects every error it can find.
///
/// Returns the model when the document is clean. When it is not, returns the diagnostics and,
/// when removing the bad nodes left a document that deserializes, that repaired model too, so that
/// semantic validation can add its own findings.
pub fn deserialize_all<T: DeserializeOwned>(source: &Source) -> (Option<T>, Vec<Diagnostic>) {
    let mut value: serde_yaml::Value = match serde_yaml::from_str(&source.text) {
        Ok(v) => v,
        Err(e) => {
            let position = e.location().map(|l| Position {
                line: l.line(),
                column: l.column(),
            });
            let d = Diagnostic {
                file: source.file.clone(),
                position,
                field: String::new(),
                message: format!("not valid YAML: {}", strip_location(&e.to_string())),
                hint: Some(
                    "check indentation and that every `key: value` has a space after the colon"
                        .into(),
                ),
            };
            return (None, vec![d]);
        }
    };
    if value.is_null() {
        let d = source.diagnostic(
            "",
            "the file is empty",
            Some("see trials/ for examples".into()),
        );
        return (None, vec![d]);
    }
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(model) => {
                sort_by_position(&mut diagnostics);
                return (Some(model), diagnostics);
            }
            Err(err) => {
                let field = field_of(err.path());
                let raw = strip_location(&err.inner().to_string());
                let missing = raw
                    .strip_prefix("missing field `")
                    .and_then(|m| m.strip_suffix('`'));
                // A required field we removed ourselves is already reported: stop here.
                if missing.is_some_and(|m| removed.iter().any(|r| *r == join(&field, m))) {
                    break;
                }
                // A required field written misspelt is reported once, as the misspelling.
                let misspelt = missing.is_some_and(|m| {
                    let suggestion = format!("did you mean `{m}`?");
                    diagnostics.iter().any(|d| {
                        d.field.rsplit_once('.').map_or("", |(parent, _)| parent) == field
                            && d.hint
                                .as_deref()
                                .is_some_and(|h| h.starts_with(&suggestion))
                    })
                });
                let message = plain_message(&raw);
                let duplicate = misspelt
                    || diagnostics
                        .iter()
                        .any(|d| d.field == field && d.message == message);
                if !duplicate {
                    let hint = hint_for(&raw);
                    diagnostics.push(source.diagnostic(&field, message, hint));
                }
                if (duplicate && !misspelt) || !remove_at(&mut value, &field) {
                    break;
                }
                removed.push(field);
            }
        }
    }
    sort_by_position(&mut diagnostics);
    (None, diagnostics)
}

fn sort_by_position(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| d.position.map(|p| (p.line, p.column)));
}

/// serde_yaml appends " at line X column Y" to some messages; we report positions ourselves.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_keys_and_sequence_items() {
        let text =
            "name: x\nruns:\n  users:\n    from: 2\n    to: 1\n  tasks: [a, b]\n".to_string();
        let s = Source::from_text(Path::new("t.yaml"), text);
        assert_eq!(
            s.position_of("runs.users.to"),
            Some(Position { line: 5, column: 5 })
        );
        assert_eq!(s.position_of("runs.tasks[1]").unwrap().line, 6);
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(s.position_of("runs.users.step").unwrap().line, 3);
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: u32,
        #[serde(default)]
        b: Option<u32>,
        #[serde(default)]
        c: Vec<u32>,
    }

    #[test]
    fn collects_every_error_not_just_the_first() {
        let text = "a: 1\nb: nope\nzz: 3\nc: [1, x]\n".to_string();
        let s = Source::from_text(Path::new("d.yaml"), text);
        let (model, diags) = deserialize_all::<Doc>(&s);
        let fields: Vec<_> = diags.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, vec!["b", "zz", "c[1]"], "{diags:?}");
        assert_eq!(diags[1].position.unwrap().line, 3);
        assert!(model.is_some(), "the repaired document still deserializes");
    }
}
