//! Process-wide memory settings the collector binary applies before it does anything else.
//!
//! **Transparent huge pages off.** mimalloc (the collector's allocator) asks the kernel for
//! huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and frees memory it has not reused for a
//! second back to the kernel. Under a steady ingest load that cycle repeats: every first touch of
//! a purged page faults in a whole 2 MiB page that the kernel zeroes. Measured with
//! `tests/bench/bigquery_e2e.sh` (perf, all processes on a 2-core VM): zeroing those pages
//! (`clear_page_erms` under `do_huge_pmd_anonymous_page`, called from mimalloc) took 23 % of the
//! collector's CPU and 10 % of the whole machine's; with huge pages off the collector's CPU per
//! event fell from 9.1 to 6.3 µs (insertAll) and from 11.1 to 7.6 µs (Storage Write). With 4 KiB
//! pages only the pages touched are zeroed. The setting (`prctl(PR_SET_THP_DISABLE)`) covers this
//! process and what it starts (a `SIGUSR2` successor).
//!
//! Setting `MIMALLOC_ALLOW_THP` in the environment (mimalloc's own option) leaves the choice to
//! mimalloc: `1` keeps huge pages, `0` turns them off as here.

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` is set. A
/// kernel without the call (not Linux, or older than 3.15) keeps its default; nothing fails.
pub fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
