//! `--reload`: watches the app's source files (the instances report the ones they
//! imported) and the `--reload-extra-file` patterns through inotify (the `notify` crate),
//! and says when a rolling reload is due: `QUIET` after the last change of a burst, so one
//! save that touches a file several times reloads once.
//!
//! It watches directories, not files, and filters their events by name, so an editor that
//! saves by writing a new file and renaming it over the old one is seen. It never polls and
//! never reloads by itself: the launcher asks `due` on each turn and acts.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::ReloadWatch;

/// How long the files must stay unchanged after a change before the reload starts.
pub const QUIET: Duration = Duration::from_millis(150);

pub struct SourceWatch {
    watcher: RecommendedWatcher,
    /// Readable when the watcher's thread has seen something (the launcher polls it).
    wake: UnixStream,
    changes: Receiver<PathBuf>,
    /// Source files the instances imported.
    files: HashSet<PathBuf>,
    patterns: Vec<glob::Pattern>,
    /// Directories watched (non-recursively, unless a pattern needs more).
    dirs: HashSet<PathBuf>,
    /// A watched file changed: the first one seen, and when the burst was last heard of.
    pending: Option<(PathBuf, Instant)>,
}

/// Whether an inotify event can mean new file contents (reads and opens cannot).
fn is_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// The directory a pattern's fixed part names, and whether its wildcards reach below it.
fn pattern_base(pattern: &str) -> (PathBuf, RecursiveMode) {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(part) = components.next() {
        let wild = part.as_os_str().to_string_lossy().contains(['*', '?', '[']);
        if wild || components.peek().is_none() {
            let deeper = wild && components.peek().is_some();
            return (
                base,
                if deeper {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                },
            );
        }
        base.push(part);
    }
    (base, RecursiveMode::NonRecursive)
}

impl SourceWatch {
    /// Starts the watcher thread and watches the directories of the extra files.
    pub fn start(config: &ReloadWatch) -> Result<SourceWatch, String> {
        let (wake, wake_writer) =
            UnixStream::pair().map_err(|e| format!("--reload: cannot create a socket: {e}"))?;
        wake.set_nonblocking(true)
            .and_then(|()| wake_writer.set_nonblocking(true))
            .map_err(|e| format!("--reload: {e}"))?;
        let (sender, changes) = mpsc::channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
            let Ok(event) = event else { return };
            if is_change(&event.kind) {
                for path in event.paths {
                    let _ = sender.send(path);
                }
                // A full socket is readable already: the byte is not needed.
                let _ = (&wake_writer).write(&[1]);
            }
        })
        .map_err(|e| format!("--reload: cannot watch files: {e}"))?;
        let mut watch = SourceWatch {
            watcher,
            wake,
            changes,
            files: HashSet::new(),
            patterns: Vec::new(),
            dirs: HashSet::new(),
            pending: None,
        };
        for text in &config.extra_files {
            watch.add_pattern(text)?;
        }
        Ok(watch)
    }

    fn add_pattern(&mut self, text: &str) -> Result<(), String> {
        let pattern =
            glob::Pattern::new(text).map_err(|e| format!("--reload-extra-file: '{text}': {e}"))?;
        let (base, mode) = pattern_base(text);
        if !base.is_dir() {
            return Err(format!(
                "--reload-extra-file: '{text}': directory {} does not exist",
                base.display()
            ));
        }
        self.watch_dir(&base, mode)
            .map_err(|e| format!("--reload-extra-file: '{text}': {e}"))?;
        self.patterns.push(pattern);
        Ok(())
    }

    fn watch_dir(&mut self, dir: &Path, mode: RecursiveMode) -> Result<(), String> {
        if self.dirs.contains(dir) && mode == RecursiveMode::NonRecursive {
            return Ok(());
        }
        self.watcher
            .watch(dir, mode)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        self.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Source files an instance reported: their directories are watched from now on.
    pub fn add_files(&mut self, files: Vec<PathBuf>) {
        let before = self.file_count();
        for file in files {
            if self.files.contains(&file) {
                continue;
            }
            if let Some(dir) = file.parent() {
                if let Err(e) = self.watch_dir(dir, RecursiveMode::NonRecursive) {
                    crate::log::warn(&format!("--reload: {e}"));
                    continue;
                }
            }
            self.files.insert(file);
        }
        if self.file_count() > before {
            crate::log::info(&format!(
                "--reload: watching {} of the app",
                crate::log::count(self.file_count(), "source file", "source files")
            ));
        }
    }

    /// How many files are watched (the extra patterns' matches not counted).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Takes what the watcher's thread saw; a watched file's change starts or extends the
    /// pending burst.
    fn take_changes(&mut self, now: Instant) {
        let mut buf = [0u8; 256];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        // Bounded: what is there now, no more than a large burst.
        for path in self.changes.try_iter().take(100_000) {
            let watched =
                self.files.contains(&path) || self.patterns.iter().any(|p| p.matches_path(&path));
            if watched {
                let first = self.pending.take().map_or(path, |(first, _)| first);
                self.pending = Some((first, now));
            }
        }
    }

    /// A file that changed, once the files have been quiet for `QUIET`; the burst is then
    /// forgotten.
    pub fn due(&mut self, now: Instant) -> Option<PathBuf> {
        self.take_changes(now);
        match &self.pending {
            Some((_, last)) if now.saturating_duration_since(*last) >= QUIET => {
                self.pending.take().map(|(path, _)| path)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_bases_stop_at_the_first_wildcard() {
        assert_eq!(
            pattern_base("/srv/app/templates/*.html"),
            (
                PathBuf::from("/srv/app/templates"),
                RecursiveMode::NonRecursive
            )
        );
        assert_eq!(
            pattern_base("/srv/app/**/*.html"),
            (PathBuf::from("/srv/app"), RecursiveMode::Recursive)
        );
        assert_eq!(
            pattern_base("/srv/app/settings.toml"),
            (PathBuf::from("/srv/app"), RecursiveMode::NonRecursive)
        );
    }

    #[test]
    fn reads_and_opens_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
    }

    #[test]
    fn a_renamed_over_file_is_due_once_after_a_quiet_spell() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.py");
        std::fs::write(&file, "a = 1\n").unwrap();
        let mut watch = SourceWatch::start(&ReloadWatch::default()).unwrap();
        watch.add_files(vec![file.clone(), file.clone()]);
        assert_eq!(watch.file_count(), 1);
        // An editor's save: a new file renamed over the old one; and an unrelated file.
        let tmp = dir.path().join(".app.py.swp");
        std::fs::write(&tmp, "a = 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            seen = watch.due(Instant::now());
        }
        assert_eq!(seen, Some(file));
        std::thread::sleep(QUIET * 2);
        assert_eq!(watch.due(Instant::now()), None, "one save, one reload");
    }

    #[test]
    fn extra_file_globs_match_new_files_and_need_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/*.html", dir.path().display());
        let config = ReloadWatch {
            extra_files: vec![pattern],
        };
        let mut watch = SourceWatch::start(&config).unwrap();
        let page = dir.path().join("index.html");
        std::fs::write(&page, "<p>").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            seen = watch.due(Instant::now());
        }
        assert_eq!(seen, Some(page));
        let missing = ReloadWatch {
            extra_files: vec!["/no/such/dir/*.html".into()],
        };
        assert!(SourceWatch::start(&missing).is_err());
    }
}
