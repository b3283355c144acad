//! Fork detection without a system call on the hot path.
//!
//! `getpid()` is a real system call on current glibc (no caching), too slow for `log()`. Instead a
//! `pthread_atfork` child handler bumps a process-wide generation counter; `log()` compares one
//! relaxed load against the generation its state was built in. CPython's `os.fork()`, php-fpm and
//! plain `fork(2)` callers all go through libc's `fork`, which runs the handler.
//!
//! This is the only `unsafe` outside tests: registering an OS callback is not an exported API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: one atomic increment.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The number of forks between the first call in this process's ancestry and now, as seen by this
/// process. Changes exactly when the caller is a forked child.
#[inline]
pub fn generation() -> u64 {
    REGISTER.call_once(|| {
        // SAFETY: `in_child` is a valid `extern "C" fn()` that lives for the program's lifetime
        // and only performs an atomic increment, which is async-signal-safe as required in a
        // child after fork.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        // On failure (ENOMEM) forks go unnoticed; nothing else we can do but keep working.
        debug_assert_eq!(rc, 0);
    });
    GENERATION.load(Ordering::Relaxed)
}
