//! The modes that push against the sandbox's limits: CPU (`spin`), memory
//! (`membomb`) and wall-clock time (`sleep`). Each announces itself on stdout
//! before it starts, so a test knows the guest is running before it waits
//! for the host to stop it. None of them reads stdin.

use std::hint::black_box;
use std::process;
use std::thread;
use std::time::Duration;

use crate::{Failure, Out, at_most, number};

/// One MiB, the unit of `membomb`.
const MIB: usize = 1024 * 1024;

/// Stride at which `membomb` touches its memory: one byte per host page.
const PAGE: usize = 4096;

/// Exit status of `membomb` once an allocation fails: a guest that saw its
/// OOM and handled it, as opposed to one that trapped.
const ALLOCATION_FAILED: i32 = 3;

/// `spin`: prints `spinning`, then computes forever without yielding.
pub fn spin(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 0)?;
    say!(out, "spinning");
    let mut x: u64 = 1;
    loop {
        // black_box keeps the optimiser from proving the loop useless.
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

/// `membomb [CHUNK_MIB]`: prints `allocating`, then allocates CHUNK_MIB
/// (default 1) MiB at a time, keeping everything, and prints
/// `allocated <total> MiB` after each chunk. When an allocation fails it
/// prints `allocation failed at <total> MiB` and exits 3.
pub fn membomb(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 1)?;
    let chunk_mib: usize = number(rest.first(), "CHUNK_MIB")?.unwrap_or(1);
    let chunk_bytes = chunk_mib
        .checked_mul(MIB)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| Failure::Usage(format!("CHUNK_MIB out of range: {chunk_mib}")))?;
    say!(out, "allocating");
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut total_mib = 0;
    loop {
        let mut chunk = Vec::new();
        // try_reserve, not push or vec!: a failed allocation must be seen
        // here, not abort the guest.
        if kept.try_reserve(1).is_err() || chunk.try_reserve_exact(chunk_bytes).is_err() {
            say!(out, "allocation failed at {total_mib} MiB");
            process::exit(ALLOCATION_FAILED);
        }
        for byte in chunk.spare_capacity_mut().iter_mut().step_by(PAGE) {
            byte.write(1);
        }
        // black_box: the chunk escapes, so neither the allocation nor the
        // writes above can be optimised away.
        kept.push(black_box(chunk));
        total_mib += chunk_mib;
        say!(out, "allocated {total_mib} MiB");
    }
}

/// `sleep [SECS]`: prints `sleeping`, then sleeps SECS seconds, or forever.
pub fn sleep(out: &mut Out, rest: &[String]) -> Result<(), Failure> {
    at_most(rest, 1)?;
    let secs: Option<u64> = number(rest.first(), "SECS")?;
    say!(out, "sleeping");
    match secs {
        Some(secs) => thread::sleep(Duration::from_secs(secs)),
        None => loop {
            thread::sleep(Duration::from_secs(3600));
        },
    }
    Ok(())
}
