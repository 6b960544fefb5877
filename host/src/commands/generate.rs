//! `wasinetd __generate DIR`: what a package installs beside the binary,
//! made from the definitions the binary itself uses, so that they cannot
//! drift from it: the manual pages `wasinetd(8)`, `wasinetd-check(8)`,
//! `wasinetd-run(8)` and `wasinetd-build(8)` from the command line's own definition (clap), the
//! config's manual page `wasinetd.conf(5)` from the README's attribute
//! table (which a test keeps row for row equal to the attribute table the
//! config reader uses), and shell completions for bash, zsh and fish.

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The README, whose attribute table and config chapter `wasinetd.conf(5)`
/// is made from.
const README: &str = include_str!("../../../README.md");

/// Writes DIR/man/*.{8,5} and DIR/completions/*.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("cannot create `{}`", d.display()))?;
    }
    let cli = Cli::command().name("wasinetd");
    write(&man.join("wasinetd.8"), &page(cli.clone(), "wasinetd")?)?;
    for (sub, name) in [
        ("check", "wasinetd-check"),
        ("run", "wasinetd-run"),
        ("build", "wasinetd-build"),
    ] {
        let cmd = cli
            .find_subcommand(sub)
            .with_context(|| format!("no `{sub}` command"))?
            .clone()
            .name(name);
        write(&man.join(format!("{name}.8")), &page(cmd, name)?)?;
    }
    write(&man.join("wasinetd.conf.5"), conf_page()?.as_bytes())?;
    for (shell, file) in [
        (Shell::Bash, "wasinetd.bash"),
        (Shell::Zsh, "_wasinetd"),
        (Shell::Fish, "wasinetd.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut public(), "wasinetd", &mut out);
        write(&completions.join(file), &out)?;
    }
    Ok(())
}

/// The command line without its hidden commands (the compiler process, this
/// one): clap_complete offers hidden commands, which no user types.
fn public() -> clap::Command {
    let cli = Cli::command();
    let mut public = clap::Command::new("wasinetd")
        .about(cli.get_about().cloned().unwrap_or_default())
        .version(crate::build_info::VERSION)
        .args(cli.get_arguments().cloned());
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        public = public.subcommand(sub.clone());
    }
    public
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write `{}`", path.display()))
}

/// A section-8 page of `cmd`.
fn page(cmd: clap::Command, title: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(title.to_uppercase())
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("wasinetd {}", crate::build_info::VERSION))
        .render(&mut out)?;
    Ok(out)
}

/// `wasinetd.conf(5)`: the language in a few paragraphs, then every
/// attribute as the README's table gives it.
fn conf_page() -> anyhow::Result<String> {
    let table = README
        .split("| Attribute | Values / unit |")
        .nth(1)
        .context("the README has no attribute table")?;
    let mut out = format!(
        ".TH WASINETD.CONF 5 \"\" \"wasinetd {}\" \"File Formats Manual\"\n",
        crate::build_info::VERSION
    );
    out.push_str(
        ".SH NAME\nwasinetd.conf \\- services of the wasinetd super-server, in xinetd's language\n\
         .SH SYNOPSIS\n/etc/wasinetd.conf, and the files it includes\n\
         .SH DESCRIPTION\n\
         wasinetd reads xinetd's config language: \\fBdefaults { ... }\\fR (at most one), \
         \\fBservice NAME { ... }\\fR, \\fBincludefile FILE\\fR and \\fBincludedir DIR\\fR at the \
         top level, one \\fIname op value...\\fR line per attribute inside a block, where \
         \\fIop\\fR is \\fB=\\fR, \\fB+=\\fR (add to a list) or \\fB\\-=\\fR (remove from it). \
         Lines whose first non-blank is \\fB#\\fR are comments. Attribute names and keywords \
         are case-insensitive. \\fBwasinetd check \\-f FILE\\fR prints every problem as \
         \\fIFILE:LINE: message\\fR.\n\
         .PP\n\
         A \\fBtenant NAME { ... }\\fR block (the host admin's files only) makes the services \
         in its \\fBincludedir\\fR a customer's, checked at load against the block's ceilings \
         and budgets; see docs/tenants.md.\n\
         .SH ATTRIBUTES\n\
         Where: S = in a service block, D = in defaults.\n",
    );
    let headings = ["Values", "Default", "Where", "xinetd / systemd", "Status"];
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells = cells(row);
        let Some((name, rest)) = cells.split_first() else {
            continue;
        };
        out.push_str(&format!(".TP\n{}\n", roff(name)));
        let parts: Vec<String> = (headings.iter().zip(rest))
            .filter(|(_, cell)| !cell.trim().is_empty())
            .map(|(heading, cell)| format!("\\fI{heading}:\\fR {}", roff(cell)))
            .collect();
        out.push_str(&parts.join("\n.br\n"));
        out.push('\n');
    }
    out.push_str(
        ".SH SEE ALSO\n\\fBwasinetd\\fR(8), \\fBxinetd.conf\\fR(5), \\fBsystemd.socket\\fR(5)\n",
    );
    Ok(out)
}

/// The cells of one Markdown table row (`\|` inside a cell is a `|`).
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap_or(&mut String::new()).push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Markdown inline text as roff: `code` bold, **strong** bold, links as
/// their text, backslashes and leading dots escaped.
fn roff(text: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '['
            && !code
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close..].find(')')
        {
            out.push_str(&roff(&rest[1..close]));
            rest = &rest[close + end + 1..];
            continue;
        }
        if rest.starts_with("**") && !code {
            rest = &rest[2..];
            continue;
        }
        match c {
            '`' => {
                out.push_str(if code { "\\fR" } else { "\\fB" });
                code = !code;
            }
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    if code {
        out.push_str("\\fR");
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_become_roff() {
        assert_eq!(cells("| `a`, `b` | x \\| y | |"), ["`a`, `b`", "x | y", ""]);
        assert_eq!(
            roff("see [Limits](#limits) and `rlimit_as` -1 **new**"),
            "see Limits and \\fBrlimit_as\\fR \\-1 new"
        );
        assert_eq!(roff(".hidden"), "\\&.hidden");
    }

    #[test]
    fn the_conf_page_has_a_paragraph_per_readme_row() {
        let page = conf_page().unwrap();
        for name in ["rlimit_as", "only_from", "allow_connect", "preopen_quota"] {
            let tag = format!(".TP\n\\fB{}\\fR\n", name);
            assert!(page.contains(&tag), "no {tag:?}");
        }
        assert!(!page.contains('`'), "markdown left in the page");
    }
}
