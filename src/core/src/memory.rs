//! Giving memory back after a large message. Converting one big nested message (a 100,000-pose
//! `nav_msgs/Path` is 7 MB on the wire) makes millions of small allocations; once freed, glibc
//! keeps them in its arenas, so the process stayed at the peak (675 MB after one such message).
//! [`release_after_large`] asks glibc to return free arena pages to the OS (`malloc_trim`), only
//! after large packages, so ordinary traffic pays nothing.

/// Allocations at least this large get their own mapping, returned to the OS when freed.
pub const MMAP_THRESHOLD_BYTES: usize = 1 << 20;

/// Give large buffers (images, their base64, their packages) their own mappings for the life of
/// the process: glibc otherwise raises its mmap threshold after the first large free (up to
/// 32 MiB) and serves later large buffers from its arenas, where a burst of them stays resident.
/// Measured with 4 MiB images far above the sustainable rate: peak RSS 199–205 MiB instead of
/// 209–251 MiB. A no-op on non-glibc targets. Call once at start, before the threads.
pub fn map_large_allocations() {
    set_mmap_threshold(MMAP_THRESHOLD_BYTES);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: usize) {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc's allocator tunables; it takes no pointers.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, i32::try_from(bytes).unwrap_or(i32::MAX));
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: usize) {}

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
