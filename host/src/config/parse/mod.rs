//! One file's text -> raw blocks and include lines, with the line of every
//! attribute. Knows the shape of a line, nothing about what an attribute
//! means (that is `attrs` and `spec`), nor about other files (`include`).

use std::path::PathBuf;

/// The words that start a top-level line.
const TOP_LEVEL: [&str; 5] = ["service", "defaults", "tenant", "includefile", "includedir"];

/// How an attribute line combines its words with what was there before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `=`
    Assign,
    /// `+=`
    Add,
    /// `-=`
    Remove,
}

impl Op {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Op::Assign => "=",
            Op::Add => "+=",
            Op::Remove => "-=",
        }
    }
}

/// One `name op value...` line, as written (the name lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawAttr {
    pub name: String,
    pub op: Op,
    pub values: Vec<String>,
    pub line: u32,
}

/// A `defaults` block, a `service NAME` block, or a `tenant NAME` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawBlock {
    /// `None` for `defaults`; the tenant's name for a `tenant` block.
    pub service: Option<String>,
    /// The tenant whose `includedir` the file was found in, if any (set by
    /// `include`, which knows where a file came from).
    pub tenant: Option<String>,
    /// The file the block is in (its attributes are too).
    pub file: PathBuf,
    /// Load-order number of `file`.
    pub seq: usize,
    /// Line of the `service NAME` / `defaults` header.
    pub line: u32,
    pub attrs: Vec<RawAttr>,
    /// Lines of the block that could not be read: (line, message).
    pub problems: Vec<(u32, String)>,
}

/// A top-level line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Item {
    Block(RawBlock),
    /// A `tenant NAME` block (its name in `service`).
    Tenant(RawBlock),
    IncludeFile {
        path: String,
        line: u32,
    },
    IncludeDir {
        path: String,
        line: u32,
    },
}

/// What one file said: its items, and the top-level lines that could not be
/// read (problems inside a block stay with the block).
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub items: Vec<Item>,
    pub problems: Vec<(u32, String)>,
}

/// Splits `text` (the file `file`, load-order number `seq`) into items.
pub(super) fn parse(text: &str, file: PathBuf, seq: usize) -> Parsed {
    // xinetd's comments: blank lines, and lines whose first non-blank is `#`.
    let lines: Vec<(u32, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (u32::try_from(i + 1).unwrap_or(u32::MAX), l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut parser = Parser {
        lines,
        next: 0,
        file,
        seq,
        out: Parsed::default(),
    };
    parser.top_level();
    parser.out
}

struct Parser<'t> {
    lines: Vec<(u32, &'t str)>,
    next: usize,
    file: PathBuf,
    seq: usize,
    out: Parsed,
}

impl<'t> Parser<'t> {
    fn top_level(&mut self) {
        while let Some(&(line, text)) = self.lines.get(self.next) {
            self.next += 1;
            // `service echo{` and `defaults{`: the brace may touch the name.
            let (head, brace) = match text.strip_suffix('{') {
                Some(head) => (head, true),
                None => (text, false),
            };
            let words: Vec<&str> = head.split_whitespace().collect();
            let keyword = words.first().map(|w| w.to_ascii_lowercase());
            match keyword.as_deref() {
                Some("service") => {
                    let block = self.block(line, brace, Some(&words[1..]), "service");
                    if let Some(block) = block {
                        self.out.items.push(Item::Block(block));
                    }
                }
                Some("tenant") => {
                    let block = self.block(line, brace, Some(&words[1..]), "tenant");
                    if let Some(block) = block {
                        self.out.items.push(Item::Tenant(block));
                    }
                }
                Some("defaults") => {
                    if let Some(block) = self.block(line, brace, None, "defaults") {
                        self.out.items.push(Item::Block(block));
                    }
                    if words.len() > 1 {
                        self.problem(line, "`defaults` takes no name".to_string());
                    }
                }
                Some(kw @ ("includefile" | "includedir")) => {
                    let words: Vec<&str> = text.split_whitespace().collect();
                    if let [_, path] = words[..] {
                        let path = path.to_string();
                        self.out.items.push(if kw == "includefile" {
                            Item::IncludeFile { path, line }
                        } else {
                            Item::IncludeDir { path, line }
                        });
                    } else {
                        let what = if kw == "includefile" { "FILE" } else { "DIR" };
                        self.problem(line, format!("`{kw}` takes one path: `{kw} {what}`"));
                    }
                }
                _ if text == "{" => {
                    self.problem(
                        line,
                        "`{` without `service NAME` or `defaults` before it".into(),
                    );
                    // Read the block so its lines are not taken for top-level ones.
                    self.body(line, "block");
                }
                _ if text.starts_with('}') => {
                    self.problem(line, "`}` without a block to close".into());
                }
                _ => self.stray(line, text),
            }
        }
    }

    /// A top-level line that is neither a block, an include nor a brace.
    fn stray(&mut self, line: u32, text: &str) {
        let message = if attribute(text).is_ok() {
            format!(
                "`{text}` is outside any block; attributes go inside `service NAME {{ ... }}` \
                 or `defaults {{ ... }}`"
            )
        } else {
            let word = text.split_whitespace().next().unwrap_or(text);
            let lower = word.to_ascii_lowercase();
            // `include` is how xinetd's own docs often spell `includefile`.
            let near = TOP_LEVEL.iter().find(|k| {
                strsim::damerau_levenshtein(k, &lower) <= 2
                    || (lower.len() >= 4 && k.starts_with(lower.as_str()))
            });
            let mut m = format!(
                "expected `service NAME`, `defaults`, `includefile FILE` or `includedir DIR`, \
                 not `{word}`"
            );
            if let Some(k) = near {
                m.push_str(&format!("; did you mean `{k}`?"));
            }
            m
        };
        self.problem(line, message);
    }

    /// Reads a block after its header at `line`. `name` is the words after
    /// `keyword` (`service` or `tenant`; `None` for `defaults`); a block
    /// without exactly one name is reported and dropped.
    fn block(
        &mut self,
        line: u32,
        brace: bool,
        name: Option<&[&str]>,
        keyword: &str,
    ) -> Option<RawBlock> {
        let label = match name {
            None => keyword.to_string(),
            Some(words) => format!("{keyword} {}", words.join(" ")),
        };
        let mut problems = Vec::new();
        if !brace {
            match self.lines.get(self.next) {
                Some((_, "{")) => self.next += 1,
                Some(&(at, text)) => {
                    problems.push((at, format!("expected `{{` after `{label}`, not `{text}`")));
                    if is_top_level(text) {
                        return self.finish(line, name, keyword, Vec::new(), problems);
                    }
                }
                None => {
                    problems.push((line, format!("`{label}` has no `{{ ... }}` block")));
                    return self.finish(line, name, keyword, Vec::new(), problems);
                }
            }
        }
        let (attrs, mut body_problems) = self.body(line, &label);
        problems.append(&mut body_problems);
        self.finish(line, name, keyword, attrs, problems)
    }

    fn finish(
        &mut self,
        line: u32,
        name: Option<&[&str]>,
        keyword: &str,
        attrs: Vec<RawAttr>,
        problems: Vec<(u32, String)>,
    ) -> Option<RawBlock> {
        let service = match name {
            None => None,
            Some([one]) => Some(one.to_string()),
            Some([]) => {
                let example = if keyword == "tenant" { "acme" } else { "echo" };
                self.problem(
                    line,
                    format!("`{keyword}` needs a name, like `{keyword} {example}`"),
                );
                return None;
            }
            Some(words) => {
                let message = format!("`{keyword}` takes one name, not `{}`", words.join(" "));
                self.problem(line, message);
                return None;
            }
        };
        Some(RawBlock {
            service,
            tenant: None,
            file: self.file.clone(),
            seq: self.seq,
            line,
            attrs,
            problems,
        })
    }

    /// Reads attribute lines up to the closing `}`. A block that reaches the
    /// end of the file, or a top-level line, is reported at its opening line.
    fn body(&mut self, open: u32, label: &str) -> (Vec<RawAttr>, Vec<(u32, String)>) {
        let mut attrs = Vec::new();
        let mut problems = Vec::new();
        while let Some(&(line, text)) = self.lines.get(self.next) {
            if let Some(rest) = text.strip_prefix('}') {
                self.next += 1;
                if !rest.trim().is_empty() {
                    problems.push((line, "`}` must be on a line of its own".into()));
                }
                return (attrs, problems);
            }
            match attribute(text) {
                Ok((name, op, values)) => attrs.push(RawAttr {
                    name,
                    op,
                    values,
                    line,
                }),
                // The block was never closed: let the top level read this line.
                Err(_) if is_top_level(text) => break,
                Err(message) => problems.push((line, message)),
            }
            self.next += 1;
        }
        problems.push((open, format!("`{label}` has no closing `}}`")));
        (attrs, problems)
    }

    fn problem(&mut self, line: u32, message: String) {
        self.out.problems.push((line, message));
    }
}

/// Whether `text` starts a top-level item (a block header or an include).
fn is_top_level(text: &str) -> bool {
    let word = text
        .split(|c: char| c.is_whitespace() || c == '{')
        .next()
        .unwrap_or("");
    TOP_LEVEL.contains(&word.to_ascii_lowercase().as_str())
}

/// Splits `name op value...`; the space around `op` is optional.
fn attribute(text: &str) -> Result<(String, Op, Vec<String>), String> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(end);
    let rest = rest.trim_start();
    let (op, values) = if let Some(v) = rest.strip_prefix("+=") {
        (Op::Add, v)
    } else if let Some(v) = rest.strip_prefix("-=") {
        (Op::Remove, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (Op::Assign, v)
    } else {
        return Err(format!(
            "expected `NAME = VALUE` (or `+=`, `-=`), not `{text}`"
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "expected `NAME = VALUE`, not `{text}`: the name is missing"
        ));
    }
    let values = values.split_whitespace().map(str::to_string).collect();
    Ok((name.to_ascii_lowercase(), op, values))
}

#[cfg(test)]
mod tests;
