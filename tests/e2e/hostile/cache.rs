//! The compiled-code cache under attack: its artefacts are mapped as
//! native code, so a file or a folder someone else could have written is
//! never used, at start-up or after a reload.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::*;

fn artefacts(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

fn start(config: &str, services: &[&str], cache: &Path) -> TestServer {
    TestServer::start_with(config, services, |cmd| {
        cmd.arg("--cache-dir").arg(cache);
    })
}

#[test]
fn an_artefact_others_can_write_is_never_mapped() {
    let cache = tempdir();
    let config = neighbour();
    start(&config, &["hello"], cache.path()).stop();
    let found = artefacts(cache.path());
    assert_eq!(found.len(), 1);
    let mode = std::fs::metadata(&found[0]).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "artefacts are written 0600");
    // Another user could now rewrite it in place while it is mapped.
    std::fs::set_permissions(&found[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    let server = start(&config, &["hello"], cache.path());
    let line = server
        .log
        .wait_for(&["cannot be loaded", "compiling again"]);
    assert!(
        line.contains("writable by group or others (mode 666)"),
        "{line}"
    );
    assert!(
        line.contains(&*found[0].file_name().unwrap().to_string_lossy()),
        "{line}"
    );
    assert!(!server.log.has(&["` cached in "]));
    assert_neighbour_answers(&server);
    // What replaced it is the daemon's own again.
    let found = artefacts(cache.path());
    assert_eq!(std::fs::metadata(&found[0]).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn a_cache_folder_swapped_in_at_its_path_is_not_used_after_a_reload() {
    let base = tempdir();
    let cache = base.path().join("cache");
    let guest = base.path().join("guest.wasm");
    std::fs::copy(module("hello-http"), &guest).unwrap();
    let config = service("hello", &guest, "");
    let server = start(&config, &["hello"], &cache);
    server.log.wait_for(&["compiled-code cache: "]);
    // The folder above becomes writable by others, who move the cache
    // away and put a folder of their own in its place.
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::rename(&cache, base.path().join("moved")).unwrap();
    std::fs::create_dir(&cache).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    // A changed guest, so the reload compiles.
    std::fs::copy(module("echo"), &guest).unwrap();
    let mark = server.log.len();
    signal(server.child(), "HUP");
    server
        .log
        .wait_for_after(mark, &["changed since it was vetted"]);
    server
        .log
        .wait_for_after(mark, &["not using cache directory"]);
    server.log.wait_for_after(mark, &["reloaded in"]);
    assert!(
        artefacts(&cache).is_empty(),
        "the daemon wrote into a folder it does not own"
    );
    assert_eq!(exchange_text(server.addr("hello"), "ping\n"), "ping\n");
    // A daemon started now refuses the folder at once.
    let other = start(&service("hello", &guest, ""), &["hello"], &cache);
    other
        .log
        .wait_for(&["not using cache directory", "owned by uid 65534"]);
}
