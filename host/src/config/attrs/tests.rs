//! The tests of `config::attrs`: the attribute table, the screening, and the README's rows.

use std::path::Path;

use super::super::Diags;
use super::*;

fn raw(name: &str, op: Op, line: u32) -> RawAttr {
    RawAttr {
        name: name.into(),
        op,
        values: vec!["x".into()],
        line,
    }
}

/// Screens `lines` in one block; returns what passed and the messages.
fn screen_all(place: Place, lines: &[RawAttr]) -> (Vec<Checked>, Vec<String>) {
    let mut diags = Diags::default();
    let mut seen = Seen::default();
    let mut report = Report::new(&mut diags, 0, Path::new("t"), None);
    let passed = lines
        .iter()
        .filter_map(|l| screen(l, place, &mut seen, &mut report))
        .collect();
    let config = diags.into_config(Vec::new(), String::new());
    let mut messages: Vec<_> = config
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.line, e.message))
        .collect();
    messages.extend(
        config
            .warnings
            .iter()
            .map(|w| format!("{}: warning: {}", w.line, w.message)),
    );
    (passed, messages)
}

#[test]
fn table_names_are_unique_and_lowercase() {
    let mut names: Vec<_> = TABLE.iter().map(|a| a.name).collect();
    assert!(names.iter().all(|n| {
        n.chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
    }));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), TABLE.len());
}

#[test]
fn unknown_names_suggest_the_nearest_attribute() {
    assert_eq!(
        unknown("rlimit_ass"),
        "unknown attribute `rlimit_ass`; did you mean `rlimit_as`?"
    );
    assert_eq!(
        unknown("sever"),
        "unknown attribute `sever`; did you mean `server`?"
    );
    assert_eq!(
        unknown("prot"),
        "unknown attribute `prot`; did you mean `port`?"
    );
    assert_eq!(
        unknown("logonsuccess"),
        "unknown attribute `logonsuccess`; did you mean `log_on_success`?"
    );
    assert_eq!(
        unknown("instance"),
        "unknown attribute `instance`; did you mean `instances`?"
    );
    assert_eq!(unknown("frobnicate"), "unknown attribute `frobnicate`");
    assert_eq!(unknown("xy"), "unknown attribute `xy`");
}

#[test]
fn unsupported_and_ignored_attributes() {
    let lines = [
        raw("libwrap", Op::Assign, 1),
        raw("user", Op::Assign, 2),
        raw("rpc_number", Op::Add, 3),
    ];
    let (passed, messages) = screen_all(Place::Service, &lines);
    assert!(passed.is_empty());
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].starts_with("1: `libwrap` is not supported: there are no TCP wrappers")
            && messages[0].ends_with("use `only_from` / `no_access`"),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("3: `rpc_number` is not supported: ONC RPC services"),
        "{messages:?}"
    );
    assert_eq!(
        messages[2],
        "2: warning: `user` has no meaning for a WebAssembly guest (it runs with no uid); ignored"
    );
}

#[test]
fn single_valued_attributes_take_one_assignment() {
    let lines = [
        raw("port", Op::Assign, 1),
        raw("port", Op::Assign, 2),
        raw("port", Op::Assign, 3),
        raw("server", Op::Add, 4),
        raw("bind", Op::Assign, 5),
        raw("interface", Op::Assign, 6),
    ];
    let (passed, messages) = screen_all(Place::Service, &lines);
    assert_eq!(
        passed.iter().map(|c| c.key).collect::<Vec<_>>(),
        [Key::Own(Own::Port), Key::Shared(Shared::Bind)]
    );
    assert_eq!(
        messages,
        [
            "2: `port` is set twice in this block (lines 1 and 2); keep one",
            "3: `port` is set twice in this block (lines 1 and 3); keep one",
            "4: `server` takes `=` only (it has a single value), not `+=`",
            "6: `interface` is set twice in this block (lines 5 and 6); keep one",
        ]
    );
}

#[test]
fn only_the_first_assignment_of_a_set_replaces() {
    let lines = [
        raw("passenv", Op::Add, 1),
        raw("passenv", Op::Assign, 2),
        raw("passenv", Op::Assign, 3),
        raw("passenv", Op::Remove, 4),
    ];
    let (passed, messages) = screen_all(Place::Service, &lines);
    assert!(messages.is_empty());
    assert_eq!(
        passed.iter().map(|c| c.replaces).collect::<Vec<_>>(),
        [false, true, false, false]
    );
}

#[test]
fn attributes_in_the_wrong_block() {
    let (_, messages) = screen_all(
        Place::Defaults,
        &[raw("port", Op::Assign, 1), raw("disable", Op::Assign, 2)],
    );
    assert_eq!(
        messages,
        [
            "1: `port` is not allowed in `defaults`; set it in each service",
            "2: `disable` is not allowed in `defaults`; list ids in `disabled = ID...`",
        ]
    );
    let (_, messages) = screen_all(
        Place::Service,
        &[
            raw("disabled", Op::Assign, 1),
            raw("enabled", Op::Assign, 2),
        ],
    );
    assert_eq!(
        messages,
        [
            "1: `disabled` is only allowed in `defaults`; use `disable = yes` in a service",
            "2: `enabled` is only allowed in `defaults`",
        ]
    );
}

#[test]
fn every_attribute_has_a_readme_row_and_every_row_an_attribute() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let table = readme
        .split("| Attribute | Values / unit |")
        .nth(1)
        .expect("the README's attribute table");
    let mut documented: Vec<&str> = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        // The first cell: one or more `name`s.
        let cell = row.split('|').nth(1).unwrap();
        documented.extend(cell.split('`').skip(1).step_by(2));
    }
    let known: Vec<&str> = TABLE.iter().map(|a| a.name).collect();
    let undocumented: Vec<_> = known.iter().filter(|n| !documented.contains(n)).collect();
    let unknown: Vec<_> = documented.iter().filter(|n| !known.contains(n)).collect();
    assert!(undocumented.is_empty(), "no README row: {undocumented:?}");
    assert!(
        unknown.is_empty(),
        "README rows of no attribute: {unknown:?}"
    );
}
