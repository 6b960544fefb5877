//! A Unix socket in a folder someone else can write: swapping a link to
//! another file in at the socket's path, while the daemon binds it or
//! changes its mode, never gets that file's mode changed.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[test]
fn a_link_swapped_in_at_the_socket_path_never_gets_its_mode() {
    let dir = tempdir();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock = dir.path().join("s.sock");
    let config = |mode: &str| {
        neighbour()
            + &format!(
                "service u\n{{\n\ttype = UNLISTED\n\tlisten_unix = {}\n\tsocket_mode = {mode}\n\tserver = {}\n}}\n",
                sock.display(),
                module("hello-http").display()
            )
    };
    let server = TestServer::start(&config("0666"), &["hello"]);
    server.log.wait_for(&["listening service=u addr=unix:"]);
    assert_neighbour_answers(&server);
    let before = footprint(&server);
    // The attacker, once the socket is there (a link there before start
    // only makes the bind fail: "it exists and is not a socket"): puts a
    // link to the victim at the socket's path, then the socket back (a
    // hard link it kept), over and over, so that a check of "is it still
    // the socket?" and a chmod by path may see different files.
    let saved = dir.path().join("saved.sock");
    std::fs::hard_link(&sock, &saved).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, victim, sock, dir) = (
            stop.clone(),
            victim.clone(),
            sock.clone(),
            dir.path().to_owned(),
        );
        std::thread::spawn(move || {
            let (link, back) = (dir.join("link"), dir.join("back.sock"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&link);
                let _ = std::fs::remove_file(&back);
                if std::os::unix::fs::symlink(&victim, &link).is_ok()
                    && std::fs::rename(&link, &sock).is_ok()
                    && std::fs::hard_link(&saved, &back).is_ok()
                    && std::fs::rename(&back, &sock).is_ok()
                {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    // Reloads that change the mode, each a chance for a chmod through the link.
    let file = server.dir.path().join("wasinetd.conf");
    for round in 0..100 {
        let mode = if round % 2 == 0 { "0600" } else { "0666" };
        let next = server.dir.path().join("next.conf");
        std::fs::write(&next, config(mode)).unwrap();
        std::fs::rename(&next, &file).unwrap();
        let mark = server.log.len();
        signal(server.child(), "HUP");
        server.log.wait_for_after(mark, &["reloaded in"]);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 0);
    let mode = std::fs::symlink_metadata(&victim)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the victim's mode changed");
    assert_neighbour_answers(&server);
    assert_back_to(&server, before, 32 << 10);
}
