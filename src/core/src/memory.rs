//! Giving memory back after a large message. Converting one big nested message (a 100,000-pose
//! `nav_msgs/Path` is 7 MB on the wire) makes millions of small allocations; once freed, glibc
//! keeps them in its arenas, so the process stayed at the peak (675 MB after one such message).
//! [`release_after_large`] asks glibc to return free arena pages to the OS (`malloc_trim`), only
//! after large packages, so ordinary traffic pays nothing.

/// Packages at least this large (canonical JSON bytes) trigger [`release_after_large`].
pub const LARGE_PACKAGE_BYTES: usize = 1 << 20;

/// Return free heap memory to the OS if `largest_package` (bytes) was large. A no-op on
/// non-glibc targets.
pub fn release_after_large(largest_package: usize) {
    if largest_package >= LARGE_PACKAGE_BYTES {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only walks glibc's own arenas; it is thread-safe and takes no pointers.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
