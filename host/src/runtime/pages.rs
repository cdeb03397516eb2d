//! Moving pages between linear memories instead of copying them.
//!
//! A chain hop of a large input hands the consumer the producer's pages:
//! their page-table entries move from one linear memory to the other, and
//! the bytes stay where they are, in this core's cache. The kernel does it
//! with `userfaultfd`'s `UFFDIO_MOVE` (Linux 6.8), which moves anonymous
//! pages between two ranges of one process without changing its mappings:
//! the destination range is registered with the `userfaultfd` only for the
//! move, and the source range is left mapped, reading as zeros (fresh pages
//! on the next touch). So the layout of the pooling allocator's slots is
//! never changed. `mremap` would move pages faster, but every move splits
//! the pool's mappings into more of them, which a slot's reset does not
//! merge back; a host would run into the kernel's mapping limit after tens
//! of thousands of hops.
//!
//! Moving costs about 80 ns a page, a few µs per move for the registration,
//! and the flushes of other cores' TLBs that every change of a page table
//! needs (costly on a virtual machine). Measured on a 2-core VM (`cargo
//! bench -p weft-host --bench chain`), a moved hop against a copied one
//! took 250 against 144 µs at 2 MiB, 208 against 324 µs at 4 MiB and 321
//! against 1,368 µs at 16 MiB; so inputs move from [`MOVE_MIN`] up. Below
//! it, and wherever a move is refused (no `userfaultfd`, a kernel before
//! 6.8, pages shared or pinned, a source that is not anonymous memory), the
//! caller copies. A move that stops part way has still moved whole pages
//! from the start; the caller copies the rest.

/// The smallest run of whole pages worth moving rather than copying.
pub(crate) const MOVE_MIN: usize = 4 << 20;

/// The size of a page of the host's memory.
pub(crate) fn page_size() -> usize {
    imp::page_size()
}

/// Whether this host can move pages at all (its kernel has `UFFDIO_MOVE`
/// and lets the process open a `userfaultfd`).
pub fn available() -> bool {
    imp::available()
}

/// Moves the whole pages of `src..src + len` to `dst..dst + len` and
/// returns how many bytes moved: a whole number of pages from the start,
/// 0 where the ranges are not page-aligned, the run is shorter than
/// [`MOVE_MIN`], or moving is refused. Whatever `dst` held in that range
/// is discarded; the source range moved reads as zeros afterwards.
///
/// # Safety
///
/// Both ranges lie in private anonymous mappings that stay mapped (the
/// move leaves them mapped), and do not overlap. Nothing reads or writes
/// either range while the move runs, and nothing reads the source range
/// for its old contents after it (the caller holds the only handle on
/// those bytes); the caller holds the destination exclusively.
#[allow(unsafe_code)]
pub(crate) unsafe fn move_pages(dst: *mut u8, src: *const u8, len: usize) -> usize {
    let page = page_size();
    let whole = len & !(page - 1);
    if whole < MOVE_MIN
        || !(dst as usize).is_multiple_of(page)
        || !(src as usize).is_multiple_of(page)
    {
        return 0;
    }
    // SAFETY: as this function's contract; both ranges are page-aligned.
    unsafe { imp::move_pages(dst, src, whole) }
}

// The ioctl numbers below are those of the generic encoding (x86-64 and
// arm64); elsewhere pages are copied.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(unsafe_code)] // userfaultfd ioctls on memory the caller vouches for.
mod imp {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::OnceLock;

    // The kernel's uapi (linux/userfaultfd.h), which the libc crate does
    // not carry: the ABI version, the feature, the modes and the ioctls.
    const UFFD_API: u64 = 0xAA;
    const UFFD_FEATURE_MOVE: u64 = 1 << 16;
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;
    const UFFDIO_API: libc::Ioctl = 0xc018_aa3f_u32 as libc::Ioctl;
    const UFFDIO_REGISTER: libc::Ioctl = 0xc020_aa00_u32 as libc::Ioctl;
    const UFFDIO_UNREGISTER: libc::Ioctl = 0x8010_aa01_u32 as libc::Ioctl;
    const UFFDIO_MOVE: libc::Ioctl = 0xc028_aa05_u32 as libc::Ioctl;

    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct Range {
        start: u64,
        len: u64,
    }

    #[repr(C)]
    struct Register {
        range: Range,
        mode: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct Move {
        dst: u64,
        src: u64,
        len: u64,
        mode: u64,
        moved: i64,
    }

    /// The process's one `userfaultfd`, opened on first use; `None` when
    /// the kernel has none, refuses one, or cannot move pages.
    fn uffd() -> Option<&'static OwnedFd> {
        static UFFD: OnceLock<Option<OwnedFd>> = OnceLock::new();
        UFFD.get_or_init(|| {
            // SAFETY: a plain system call; a non-negative result is a new
            // descriptor this process owns.
            let fd =
                unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
            if fd < 0 {
                tracing::debug!(
                    "pages are copied, not moved: no userfaultfd ({})",
                    std::io::Error::last_os_error()
                );
                return None;
            }
            // SAFETY: `fd` was just opened and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let mut api = Api {
                api: UFFD_API,
                features: UFFD_FEATURE_MOVE,
                ioctls: 0,
            };
            // SAFETY: UFFDIO_API reads and writes the `Api` it is given.
            if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) } != 0 {
                tracing::debug!(
                    "pages are copied, not moved: this kernel cannot move pages ({})",
                    std::io::Error::last_os_error()
                );
                return None;
            }
            Some(fd)
        })
        .as_ref()
    }

    pub(super) fn available() -> bool {
        uffd().is_some()
    }

    pub(super) fn page_size() -> usize {
        static PAGE: OnceLock<usize> = OnceLock::new();
        // SAFETY: sysconf has no preconditions.
        *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        })
    }

    /// Moves `len` bytes (whole, aligned pages) from `src` to `dst`.
    ///
    /// # Safety
    ///
    /// As `super::move_pages`.
    pub(super) unsafe fn move_pages(dst: *mut u8, src: *const u8, len: usize) -> usize {
        let Some(uffd) = uffd() else {
            return 0;
        };
        let fd = uffd.as_raw_fd();
        // A move only fills pages that are not there: let go of any the
        // destination has (a warm instance's room may have been faulted
        // in). They hold nothing the guest may keep: the caller is about
        // to overwrite the range.
        // SAFETY: the caller holds the range exclusively; MADV_DONTNEED
        // leaves a private anonymous range mapped, reading as zeros.
        if unsafe { libc::madvise(dst.cast(), len, libc::MADV_DONTNEED) } != 0 {
            return 0;
        }
        // The destination is registered only while the move runs: a fault
        // in a registered range would wait for a handler this process does
        // not run, and nothing touches the range meanwhile (the caller's
        // contract).
        let mut register = Register {
            range: Range {
                start: dst as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes the `Register` given.
        if unsafe { libc::ioctl(fd, UFFDIO_REGISTER, &mut register) } != 0 {
            return 0;
        }
        let mut moved = 0usize;
        while moved < len {
            let mut step = Move {
                dst: (dst as usize + moved) as u64,
                src: (src as usize + moved) as u64,
                len: (len - moved) as u64,
                mode: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
                moved: 0,
            };
            // SAFETY: UFFDIO_MOVE reads and writes the `Move` given; the
            // ranges are the caller's (see the contract).
            let failed = unsafe { libc::ioctl(fd, UFFDIO_MOVE, &mut step) } != 0;
            if step.moved > 0 {
                moved += step.moved as usize;
            }
            if failed {
                // EAGAIN: a large page on the way was split, or raced;
                // the next call goes on from where this one stopped.
                let again = std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
                if !(again && step.moved > 0) {
                    break;
                }
            }
        }
        let range = Range {
            start: dst as u64,
            len: len as u64,
        };
        // SAFETY: UFFDIO_UNREGISTER reads the `Range` given.
        if unsafe { libc::ioctl(fd, UFFDIO_UNREGISTER, &range) } != 0 {
            // Never seen: the range was registered a moment ago. Say so
            // loudly, since a fault there would now wait forever.
            tracing::error!(
                "could not unregister {len} bytes of guest memory from the userfaultfd: {}",
                std::io::Error::last_os_error()
            );
        }
        moved
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[allow(unsafe_code)] // The same signature as on Linux; it does nothing.
mod imp {
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn page_size() -> usize {
        4096
    }

    pub(super) unsafe fn move_pages(_: *mut u8, _: *const u8, _: usize) -> usize {
        0
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // Maps and unmaps the test's own memory.
mod tests {
    use super::*;

    /// A private anonymous mapping of `len` bytes, unmapped on drop.
    struct Mapping {
        ptr: *mut u8,
        len: usize,
    }

    impl Mapping {
        fn new(len: usize) -> Mapping {
            // SAFETY: a fresh anonymous mapping at an address of the
            // kernel's choosing.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            Mapping {
                ptr: ptr.cast(),
                len,
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the mapping is readable and writable for `len` bytes
            // and borrowed through `self`.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping this value made.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    }

    #[test]
    fn whole_pages_move_and_the_source_reads_zeros() {
        let page = page_size();
        let len = MOVE_MIN + 5 * page + 123;
        let mut src = Mapping::new(len + page);
        let mut dst = Mapping::new(len + page);
        let data = pattern(len, 7);
        src.bytes()[..len].copy_from_slice(&data);
        // The destination's old pages (faulted in) are discarded.
        dst.bytes().fill(0xEE);
        // SAFETY: two private mappings this test holds alone.
        let moved = unsafe { move_pages(dst.ptr, src.ptr, len) };
        if !available() {
            assert_eq!(moved, 0, "nothing moves where the kernel cannot");
            eprintln!("this kernel cannot move pages: only the refusal was tested");
            return;
        }
        assert_eq!(moved, len / page * page, "every whole page moves");
        assert_eq!(&dst.bytes()[..moved], &data[..moved]);
        assert!(src.bytes()[..moved].iter().all(|&b| b == 0));
        // The partial last page stays, for the caller to copy.
        assert_eq!(&src.bytes()[moved..len], &data[moved..]);
        // Moved pages are ordinary memory: they can be written and moved on.
        dst.bytes()[0] = 1;
        // SAFETY: as above, the other way.
        let back = unsafe { move_pages(src.ptr, dst.ptr, moved) };
        assert_eq!(back, moved);
        assert_eq!(src.bytes()[0], 1);
        assert_eq!(&src.bytes()[1..moved], &data[1..moved]);
    }

    #[test]
    fn short_or_unaligned_ranges_are_left_to_copy() {
        let page = page_size();
        let mut src = Mapping::new(MOVE_MIN + 2 * page);
        let dst = Mapping::new(MOVE_MIN + 2 * page);
        src.bytes().fill(3);
        // SAFETY: private mappings this test holds alone.
        unsafe {
            assert_eq!(move_pages(dst.ptr, src.ptr, MOVE_MIN - 1), 0);
            assert_eq!(move_pages(dst.ptr, src.ptr.add(1), MOVE_MIN + page), 0);
            assert_eq!(move_pages(dst.ptr.add(8), src.ptr, MOVE_MIN + page), 0);
        }
        assert!(src.bytes().iter().all(|&b| b == 3), "nothing moved");
    }

    #[test]
    fn a_source_that_is_not_anonymous_memory_is_refused() {
        // A file mapping cannot give its pages away: the move stops at once
        // and the caller copies everything.
        let page = page_size();
        let len = MOVE_MIN + page;
        let file = tempfile_of(len);
        // SAFETY: a private mapping of the test's own file.
        let src = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(src, libc::MAP_FAILED);
        let dst = Mapping::new(len);
        // SAFETY: private mappings this test holds alone.
        let moved = unsafe { move_pages(dst.ptr, src.cast(), len) };
        assert_eq!(moved, 0);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(src, len) };
    }

    fn tempfile_of(len: usize) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("weft-pages-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(len as u64).unwrap();
        file
    }
}
