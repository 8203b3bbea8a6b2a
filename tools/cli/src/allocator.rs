//! The process's allocator (mimalloc) and whether it gives freed memory back to the kernel.
//!
//! mimalloc returns ("purges") freed memory to the kernel about a second after it is freed. The
//! server frees the sealed tail at every seal (hundreds of MB under load) and allocates as much
//! again within seconds. On a virtual machine whose kernel reports free pages to the host
//! (virtio-balloon free page reporting, which this machine has), the kernel hands every freed
//! 2 MiB block to the host two seconds later, and while the host takes them back the virtual
//! disk stalls: WAL fsyncs of 50-300 ms, every one exactly when 64 MiB or more was reported
//! (traced with `ext4_sync_file_enter/exit` beside `/sys/module/page_reporting/parameters/
//! reported_kib`). Keeping freed memory in the process removes those stalls; the server's
//! resident memory then stays at its high-water mark, which the tail's memory limit bounds.
//!
//! The same host stalls the first touch of a transparent huge page: mimalloc asks for huge
//! pages on its arenas (`madvise(MADV_HUGEPAGE)`), and faulting in a 2 MiB page that the host
//! took back costs 512 host faults at once, about 10 ms for the thread that touched it. The
//! server's ingest threads touch new memory whenever the tail grows past its high-water mark
//! (a fresh server's first seconds, the first seals). At 30,000 events/s for 60 s, alternated
//! runs: ack p99 29 and 36 ms with huge pages, 18 and 20 without (a third, in a minute of slow
//! fsyncs, 47), and half as many requests over 10 ms. The server turns them off for its process
//! (`prctl(PR_SET_THP_DISABLE)`) unless `huge_pages` is configured.
//!
//! ```text
//! // In `auditlog serve`, unless `release_memory` is configured:
//! allocator::keep_freed_memory()   // Ok(()) or why not (logged)
//! // ... and unless `huge_pages` is configured:
//! allocator::disable_huge_pages()  // Ok(()) or the OS error (logged)
//! ```

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (`include/mimalloc.h`); the Rust
/// bindings do not name it. Checked at run time against its default before it is set.
const MI_OPTION_PURGE_DELAY: c_int = 15;
/// mimalloc v3's default purge delay in milliseconds, which identifies the option above.
const DEFAULT_PURGE_DELAY_MS: c_long = 1000;

extern "C" {
    // Both are exported by the mimalloc library that the `mimalloc` crate links in.
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// Why the allocator was left as it was.
#[derive(Debug, PartialEq, Eq)]
pub enum NotKept {
    /// `MIMALLOC_PURGE_DELAY` is set: the operator chose.
    SetByEnvironment,
    /// The option does not hold mimalloc v3's default: another mimalloc version, whose option
    /// numbers may differ, so nothing is changed.
    UnknownAllocator(c_long),
}

/// Tells the allocator never to return freed memory to the kernel (purge delay -1), unless the
/// environment already sets it or the allocator is not the version this was written for.
pub fn keep_freed_memory() -> Result<(), NotKept> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return Err(NotKept::SetByEnvironment);
    }
    // SAFETY: plain reads and writes of mimalloc's option table; any option index is accepted
    // (out-of-range ones are ignored by mimalloc), and the value is checked before writing.
    unsafe {
        let current = mi_option_get(MI_OPTION_PURGE_DELAY);
        if current != DEFAULT_PURGE_DELAY_MS {
            return Err(NotKept::UnknownAllocator(current));
        }
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        Ok(())
    }
}

/// Stops the kernel from backing this process's memory (and its children's) with transparent
/// huge pages, whatever the allocator advises; pages already faulted in stay as they are.
pub fn disable_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_disabled_for_the_process() {
        disable_huge_pages().expect("prctl");
        // SAFETY: as above; PR_GET_THP_DISABLE returns the flag.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

    #[test]
    fn the_purge_delay_option_is_found_and_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            assert_eq!(keep_freed_memory(), Err(NotKept::SetByEnvironment));
            return;
        }
        assert_eq!(keep_freed_memory(), Ok(()));
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
        // Allocating and freeing still works with purging off.
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }
}
