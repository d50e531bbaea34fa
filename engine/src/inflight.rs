//! The app calls in progress: the registry the stall report and the heartbeat read, the in-flight
//! file the master reads after the worker died (src/worker/inflight.rs has its layout: `SLOTS`
//! slots of `SLOT_SIZE` bytes, `METHOD PATH\0` per request in slot `key % SLOTS`, the quarantined
//! requests in the second half), and the quarantine check.
//!
//! Invariants: every `begin` is followed by exactly one `end` with its key (the WSGI handler
//! guarantees it, panics included); the mapping is written only under the registry's lock; the
//! mapping lives as long as the registry (it is unmapped on drop, never while a writer holds it).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

pub const SLOTS: usize = 8;
pub const SLOT_SIZE: usize = 256;
pub const QUARANTINE_OFFSET: usize = SLOTS * SLOT_SIZE;
pub const FILE_SIZE: usize = 2 * QUARANTINE_OFFSET;
/// Paths are cut to this many characters in the registry (as the Python runtime's PATH_LIMIT).
pub const PATH_LIMIT: usize = 200;

struct Mapping {
    ptr: *mut u8,
}

// SAFETY: the mapping is a plain shared-memory region; every access goes through the registry's
// Mutex, so moving the pointer between threads cannot race.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a successful mmap of FILE_SIZE bytes and nobody uses it now.
        unsafe {
            libc::munmap(self.ptr.cast(), FILE_SIZE);
        }
    }
}

struct Inner {
    next: u64,
    live: HashMap<u64, (String, String, Instant)>,
    owners: [u64; SLOTS],
    file: Option<Mapping>,
}

pub struct Registry {
    inner: Mutex<Inner>,
    quarantined: RwLock<HashSet<String>>,
    any_quarantined: AtomicBool,
}

impl Registry {
    /// With `fd` (the master's in-flight file): mapped, then closed; its quarantine list read.
    pub fn new(fd: Option<i32>) -> std::io::Result<Registry> {
        let (file, quarantined) = match fd {
            Some(fd) => {
                let (mapping, list) = map(fd)?;
                (Some(mapping), list)
            }
            None => (None, HashSet::new()),
        };
        Ok(Registry {
            inner: Mutex::new(Inner {
                next: 1,
                live: HashMap::new(),
                owners: [0; SLOTS],
                file,
            }),
            any_quarantined: AtomicBool::new(!quarantined.is_empty()),
            quarantined: RwLock::new(quarantined),
        })
    }

    /// Notes an app call; `None` when the request is quarantined (answer 503, no app call).
    pub fn begin(&self, method: &str, path: &str) -> Option<u64> {
        if self.any_quarantined.load(Ordering::Relaxed) {
            let line = format!("{method} {path}");
            if self
                .quarantined
                .read()
                .map(|q| q.contains(&line))
                .unwrap_or(false)
            {
                return None;
            }
        }
        let path: String = path.chars().take(PATH_LIMIT).collect();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = inner.next;
        inner.next += 1;
        let slot = (key as usize) % SLOTS;
        inner.owners[slot] = key;
        if let Some(file) = &inner.file {
            let mut line = Vec::with_capacity(method.len() + path.len() + 2);
            line.extend_from_slice(method.as_bytes());
            line.push(b' ');
            line.extend_from_slice(path.as_bytes());
            line.truncate(SLOT_SIZE - 1);
            line.push(0);
            // SAFETY: the slot lies within the FILE_SIZE-byte mapping (slot < SLOTS, the line at
            // most SLOT_SIZE bytes); writers hold the registry lock.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    line.as_ptr(),
                    file.ptr.add(slot * SLOT_SIZE),
                    line.len(),
                );
            }
        }
        inner
            .live
            .insert(key, (method.to_string(), path, Instant::now()));
        Some(key)
    }

    pub fn end(&self, key: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.live.remove(&key);
        let slot = (key as usize) % SLOTS;
        if inner.owners[slot] == key {
            inner.owners[slot] = 0;
            if let Some(file) = &inner.file {
                // SAFETY: the slot's first byte is within the mapping; writers hold the lock.
                unsafe { *file.ptr.add(slot * SLOT_SIZE) = 0 };
            }
        }
    }

    /// The method and path noted under `key`, for a log line about that request.
    pub fn describe(&self, key: u64) -> (String, String) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .live
            .get(&key)
            .map_or_else(Default::default, |(m, p, _)| (m.clone(), p.clone()))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.live.len()).unwrap_or(0)
    }

    /// (method, path, seconds in flight) of every app call in progress.
    pub fn snapshot(&self) -> Vec<(String, String, f64)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .live
            .values()
            .map(|(m, p, t)| (m.clone(), p.clone(), t.elapsed().as_secs_f64()))
            .collect()
    }

    /// The master's `quarantine` message: the new list.
    pub fn set_quarantined(&self, requests: Vec<String>) {
        let any = !requests.is_empty();
        if let Ok(mut q) = self.quarantined.write() {
            *q = requests.into_iter().collect();
        }
        self.any_quarantined.store(any, Ordering::Relaxed);
    }
}

fn map(fd: i32) -> std::io::Result<(Mapping, HashSet<String>)> {
    // SAFETY: mmap of a descriptor the caller handed over, checked for failure; the fd is closed
    // right after (the mapping keeps the file).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FILE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    // SAFETY: closing the descriptor we were given to own.
    unsafe { libc::close(fd) };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let mapping = Mapping { ptr: ptr.cast() };
    // SAFETY: the second half of the mapping, FILE_SIZE - QUARANTINE_OFFSET bytes, is readable.
    let tail = unsafe {
        std::slice::from_raw_parts(
            mapping.ptr.add(QUARANTINE_OFFSET),
            FILE_SIZE - QUARANTINE_OFFSET,
        )
    };
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    let list = String::from_utf8_lossy(&tail[..end])
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok((mapping, list))
}
