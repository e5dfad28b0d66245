//! Process titles, so `ps` tells the launcher from its instances: the command line that
//! `ps -o args` and /proc/PID/cmdline show, and the short name (`comm`) `top` and
//! `ps -o comm` show.
//!
//! The command line is the process's own argv memory: it is rewritten through
//! /proc/self/mem (no raw pointers). It may take the environment strings' space after argv
//! too, once `prepare` has made the C environment point to copies of them. Never panics and
//! never fails the caller: a title that cannot be set is only a cosmetic loss.

use std::ffi::CString;
use std::io::{Seek, SeekFrom, Write};

/// The argv and environment string areas of this process, from /proc/self/stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Areas {
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
}

/// Fields 48 to 51 of /proc/PID/stat (proc(5)), counted after the `(comm)` field, which
/// may itself contain spaces and parentheses.
fn parse_areas(stat: &str) -> Option<Areas> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // The field after `)` is field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let areas = Areas {
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
    };
    (areas.arg_start < areas.arg_end).then_some(areas)
}

fn own_areas() -> Option<Areas> {
    parse_areas(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Lets a later title use the environment strings' space too, as setproctitle does. Call
/// it early, while the process has one thread: it sets every environment variable again
/// to its own value, so the C library keeps copies and no longer reads the original
/// strings. Does nothing unless those strings directly follow argv.
pub fn prepare() {
    let Some(areas) = own_areas() else {
        return;
    };
    if areas.env_start != areas.arg_end {
        return;
    }
    let vars: Vec<_> = std::env::vars_os().collect();
    // `set_var` refuses (panics on) such names: keep the original strings then.
    let settable = vars.iter().all(|(name, _)| {
        let bytes = name.as_encoded_bytes();
        !bytes.is_empty() && !bytes.contains(&b'=') && !bytes.contains(&0)
    });
    if !settable {
        return;
    }
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    EXTENDED.store(true, std::sync::atomic::Ordering::Relaxed);
}

static EXTENDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The bytes written over the area: the title, cut to fit, then NULs to the end.
fn title_bytes(title: &str, room: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = title.bytes().filter(|b| *b != 0).collect();
    bytes.truncate(room.saturating_sub(1));
    bytes.resize(room, 0);
    bytes
}

/// Sets the command line `ps -o args` shows and the short name: `evserve: launcher ...`.
pub fn set(title: &str, short_name: &str) {
    if let Ok(name) = CString::new(short_name) {
        // PR_SET_NAME: the kernel keeps 15 bytes.
        let _ = rustix::thread::set_name(&name);
    }
    let _ = rewrite_args(title);
}

fn rewrite_args(title: &str) -> std::io::Result<()> {
    let areas = own_areas().ok_or_else(|| std::io::Error::other("no argv area"))?;
    let end = if EXTENDED.load(std::sync::atomic::Ordering::Relaxed) {
        areas.env_end
    } else {
        areas.arg_end
    };
    let room = usize::try_from(end - areas.arg_start).map_err(std::io::Error::other)?;
    let mut mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")?;
    mem.seek(SeekFrom::Start(areas.arg_start))?;
    mem.write_all(&title_bytes(title, room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_read_after_an_odd_comm() {
        let mut stat = String::from("42 (a) b (c)) S");
        for n in 4..=52 {
            stat.push_str(&format!(" {n}"));
        }
        assert_eq!(
            parse_areas(&stat),
            Some(Areas {
                arg_start: 48,
                arg_end: 49,
                env_start: 50,
                env_end: 51
            })
        );
        assert_eq!(parse_areas("42 (x) S 1 2"), None);
    }

    #[test]
    fn own_areas_are_readable() {
        let areas = own_areas().expect("/proc/self/stat");
        assert!(areas.arg_start < areas.arg_end && areas.env_start <= areas.env_end);
    }

    #[test]
    fn titles_are_cut_to_fit_and_end_in_nul() {
        assert_eq!(title_bytes("abc", 6), b"abc\0\0\0");
        assert_eq!(title_bytes("abcdef", 4), b"abc\0");
        assert_eq!(title_bytes("a\0b", 4), b"ab\0\0");
        assert_eq!(title_bytes("x", 0), b"");
    }
}
