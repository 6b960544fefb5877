//! The `fs` mode: runs filesystem operations against whatever the host
//! preopened, and reports each one's result, so a test can check what the
//! sandbox lets a guest see, read and write.

use std::fs;
use std::io;

use crate::{Failure, Out};

/// `fs OP...`: for each `ls:PATH`, `cat:PATH` or `write:PATH:TEXT` prints
/// `<op> PATH ok ...` or `<op> PATH err <io::ErrorKind>`, then `end`.
pub fn fs(out: &mut Out, ops: &[String]) -> Result<(), Failure> {
    for op in ops {
        say!(out, "{}", run(op));
    }
    say!(out, "end");
    Ok(())
}

/// Runs one operation and returns its report line.
fn run(op: &str) -> String {
    let (kind, rest) = op.split_once(':').unwrap_or((op, ""));
    let (path, result) = match kind {
        "ls" => (rest, ls(rest)),
        "cat" => (rest, cat(rest)),
        "write" => match rest.split_once(':') {
            Some((path, text)) => (path, fs::write(path, text).map(|()| String::new())),
            None => (rest, Err(io::ErrorKind::InvalidInput.into())),
        },
        _ => (rest, Err(io::ErrorKind::InvalidInput.into())),
    };
    match result {
        Ok(detail) => format!("{kind} {path} ok{detail}"),
        Err(e) => format!("{kind} {path} err {:?}", e.kind()),
    }
}

/// The entries of directory `path`, sorted, each preceded by a space.
fn ls(path: &str) -> io::Result<String> {
    let mut names = fs::read_dir(path)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<String>>>()?;
    names.sort();
    Ok(format!(" {}", names.join(" ")))
}

/// The content of file `path` on one line, preceded by a space.
fn cat(path: &str) -> io::Result<String> {
    let content = fs::read(path)?;
    Ok(format!(
        " {}",
        String::from_utf8_lossy(&content).replace('\n', "\\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_operation_on_one_line() {
        let dir = std::env::temp_dir().join(format!("probe-fs-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("the temp dir is writable");
        let d = dir.to_str().expect("the temp dir path is UTF-8");

        assert_eq!(
            run(&format!("write:{d}/b:two\nlines")),
            format!("write {d}/b ok")
        );
        assert_eq!(run(&format!("write:{d}/a:")), format!("write {d}/a ok"));
        assert_eq!(run(&format!("ls:{d}")), format!("ls {d} ok a b"));
        assert_eq!(
            run(&format!("cat:{d}/b")),
            format!("cat {d}/b ok two\\nlines")
        );
        assert_eq!(
            run(&format!("cat:{d}/c")),
            format!("cat {d}/c err NotFound")
        );
        assert_eq!(run("write:nowhere"), "write nowhere err InvalidInput");
        assert_eq!(run("rm:x"), "rm x err InvalidInput");

        fs::remove_dir_all(&dir).expect("the test made this dir");
    }
}
