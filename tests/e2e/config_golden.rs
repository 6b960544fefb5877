//! Config errors as golden pairs: `tests/config/<case>.conf` and beside it
//! `<case>.err`, exactly what `wasinetd check -f <case>.conf` prints on
//! stderr when run from `tests/config`. A new case is two new files.

use std::path::Path;

use crate::support::wasinetd;

#[test]
fn every_golden_case_prints_exactly_its_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/config");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap();
        let expected = std::fs::read_to_string(case.with_extension("err"))
            .unwrap_or_else(|_| panic!("{} has no .err beside it", case.display()));
        let out = wasinetd()
            .arg("check")
            .arg("-f")
            .arg(name)
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: check succeeded", name.to_string_lossy()));
        } else if stderr != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{stderr}",
                name.to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
