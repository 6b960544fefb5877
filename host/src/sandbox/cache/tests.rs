//! The tests of `cache`: vetting, keys, pruning.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use wasmtime::Engine;

use super::artefacts::key;
use super::vet::vet;
use super::*;

fn dir_with_mode(mode: u32) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
    dir
}

#[test]
fn a_directory_others_can_write_or_replace_is_refused() {
    let vet_path = |p: &Path| vet(p, &fs::metadata(p).unwrap());
    let open = dir_with_mode(0o777);
    assert!(vet_path(open.path()).is_err());
    assert!(Cache::open(&CacheSetting::Dir(open.path().into())).is_none());
    let group = dir_with_mode(0o770);
    assert!(vet_path(group.path()).is_err());
    let private = dir_with_mode(0o755);
    vet_path(private.path()).unwrap();
    // A private folder inside one others can write (not sticky): they
    // could rename it away and put theirs in its place.
    let inside = open.path().join("cache");
    fs::DirBuilder::new().mode(0o700).create(&inside).unwrap();
    let e = vet_path(&inside).unwrap_err().to_string();
    assert!(e.contains("above it is writable by group or others"), "{e}");
}

#[test]
fn the_key_follows_the_bytes_and_is_stable() {
    let engine = Engine::default();
    let a = key(&engine, b"(module)");
    assert_eq!(a, key(&engine, b"(module)"));
    assert_ne!(a, key(&engine, b"(module) "));
    assert_eq!(a.len(), 64);
}

#[test]
fn prune_removes_only_old_artefacts_and_stale_temp_files() {
    let dir = dir_with_mode(0o700);
    let cache = Cache::open(&CacheSetting::Dir(dir.path().into())).unwrap();
    let old = SystemTime::now() - MAX_AGE - Duration::from_secs(60);
    for (name, age) in [
        ("old.cwasm", Some(old)),
        ("new.cwasm", None),
        (".x.cwasm.1.0.tmp", Some(old)),
        ("other-file", Some(old)),
    ] {
        let f = fs::File::create(dir.path().join(name)).unwrap();
        if let Some(t) = age {
            f.set_modified(t).unwrap();
        }
    }
    assert_eq!(cache.prune(MAX_AGE), 2);
    let mut left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["new.cwasm", "other-file"]);
}
