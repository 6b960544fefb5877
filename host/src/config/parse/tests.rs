//! The tests of `config::parse`: the shape of lines, blocks and includes.

use super::*;

fn items(text: &str) -> Parsed {
    parse(text, PathBuf::from("t.conf"), 0)
}

fn block(item: &Item) -> &RawBlock {
    match item {
        Item::Block(b) => b,
        other => panic!("not a block: {other:?}"),
    }
}

#[test]
fn attribute_lines_split_name_op_and_words() {
    let ok = |t| attribute(t).unwrap();
    assert_eq!(
        ok("port = 80"),
        ("port".into(), Op::Assign, vec!["80".into()])
    );
    assert_eq!(
        ok("port=80"),
        ("port".into(), Op::Assign, vec!["80".into()])
    );
    assert_eq!(
        ok("PassEnv += A B"),
        ("passenv".into(), Op::Add, vec!["A".into(), "B".into()])
    );
    assert_eq!(ok("env-=X"), ("env".into(), Op::Remove, vec!["X".into()]));
    assert_eq!(
        ok("env = A=b"),
        ("env".into(), Op::Assign, vec!["A=b".into()])
    );
    assert_eq!(
        ok("server_args ="),
        ("server_args".into(), Op::Assign, vec![])
    );
    assert!(
        attribute("port 80")
            .unwrap_err()
            .contains("expected `NAME = VALUE`")
    );
    assert!(
        attribute("= 80")
            .unwrap_err()
            .contains("the name is missing")
    );
}

#[test]
fn brace_on_same_or_next_line_and_comments() {
    let text =
        "# top\n\nservice a {\n  # c\n  port = 1\n}\nservice b\n{\nport=2\n}\nservice c{\n}\n";
    let parsed = items(text);
    assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    let names: Vec<_> = parsed
        .items
        .iter()
        .map(|i| block(i).service.clone())
        .collect();
    assert_eq!(
        names,
        [Some("a".into()), Some("b".into()), Some("c".into())]
    );
    let b = block(&parsed.items[1]);
    assert_eq!((b.line, b.attrs[0].line), (7, 9));
    assert!(b.problems.is_empty());
}

#[test]
fn includes_and_defaults() {
    let parsed = items("defaults\n{\n instances = 3\n}\nincludefile a/b\nIncludeDir d\n");
    assert_eq!(block(&parsed.items[0]).service, None);
    assert_eq!(
        parsed.items[1],
        Item::IncludeFile {
            path: "a/b".into(),
            line: 5
        }
    );
    assert_eq!(
        parsed.items[2],
        Item::IncludeDir {
            path: "d".into(),
            line: 6
        }
    );
    let parsed = items("includefile\nincludedir a b\n");
    assert_eq!(
        parsed.problems,
        [
            (
                1,
                "`includefile` takes one path: `includefile FILE`".to_string()
            ),
            (
                2,
                "`includedir` takes one path: `includedir DIR`".to_string()
            ),
        ]
    );
}

#[test]
fn unterminated_block_is_reported_at_its_opening_line() {
    let parsed = items("service a\n{\nport = 1\nservice b\n{\nport = 2\n}\nservice c {\n");
    let a = block(&parsed.items[0]);
    assert_eq!(
        a.problems,
        [(1, "`service a` has no closing `}`".to_string())]
    );
    assert_eq!(a.attrs.len(), 1);
    assert!(block(&parsed.items[1]).problems.is_empty());
    let c = block(&parsed.items[2]);
    assert_eq!(
        c.problems,
        [(8, "`service c` has no closing `}`".to_string())]
    );
}

#[test]
fn missing_open_brace_is_reported_and_the_body_still_read() {
    let parsed = items("service a\nport = 1\n}\nservice b\nservice c\n{\n}\n");
    let a = block(&parsed.items[0]);
    assert_eq!(a.problems[0].0, 2);
    assert!(
        a.problems[0]
            .1
            .starts_with("expected `{` after `service a`")
    );
    assert_eq!(a.attrs.len(), 1);
    let b = block(&parsed.items[1]);
    assert_eq!(
        b.problems[0].1,
        "expected `{` after `service b`, not `service c`"
    );
    assert!(block(&parsed.items[2]).problems.is_empty());
    assert!(parsed.problems.is_empty());
}

#[test]
fn stray_lines_and_bad_headers() {
    let parsed = items(
        "port = 80\nservce x\n}\nservice\n{\n}\nservice a b {\n}\ndefaults x {\n}\ninclude a\nfoo\n",
    );
    let messages: Vec<_> = parsed
        .problems
        .iter()
        .map(|(l, m)| format!("{l}: {m}"))
        .collect();
    assert_eq!(
        messages,
        [
            "1: `port = 80` is outside any block; attributes go inside `service NAME { ... }` or `defaults { ... }`",
            "2: expected `service NAME`, `defaults`, `includefile FILE` or `includedir DIR`, not `servce`; did you mean `service`?",
            "3: `}` without a block to close",
            "4: `service` needs a name, like `service echo`",
            "7: `service` takes one name, not `a b`",
            "9: `defaults` takes no name",
            "11: expected `service NAME`, `defaults`, `includefile FILE` or `includedir DIR`, not `include`; did you mean `includefile`?",
            "12: expected `service NAME`, `defaults`, `includefile FILE` or `includedir DIR`, not `foo`",
        ]
    );
    // Nameless blocks are dropped, `defaults x` is kept.
    assert_eq!(parsed.items.len(), 1);
}

#[test]
fn bad_lines_inside_a_block_stay_with_the_block() {
    let parsed = items("service a {\nport 80\n{\n} x\n");
    let a = block(&parsed.items[0]);
    let lines: Vec<_> = a.problems.iter().map(|p| p.0).collect();
    assert_eq!(lines, [2, 3, 4]);
    assert_eq!(a.problems[2].1, "`}` must be on a line of its own");
}

#[test]
fn windows_line_endings_are_fine() {
    let parsed = items("service a\r\n{\r\nport = 1\r\n}\r\n");
    assert!(block(&parsed.items[0]).problems.is_empty());
    assert_eq!(block(&parsed.items[0]).attrs[0].values, ["1"]);
}
