//! Gives back the untouched part of FFmpeg's FLAC encoder state.
//!
//! libavcodec's FLAC encoder keeps its whole state in one `priv_data`
//! block sized for the format's maximum of 8 channels and 65535-sample
//! blocks (about 6.6 MB in FFmpeg 5.1), and zeroes all of it at open. A mono
//! encoder with 4608-sample blocks touches a few hundred KB of it, yet the
//! zeroing makes every page resident: 32 encoders would hold over 200 MB.
//!
//! NOTE: the release binary's own FFmpeg no longer does this (see
//! `packaging/ffmpeg-patches/0005-*`: its context is 56 KB and there is
//! nothing to give back); builds against a stock FFmpeg (development builds
//! linking the system's libavcodec) still need it.
//!
//! Pages that hold only zeros are handed back with `MADV_DONTNEED`. For
//! private anonymous memory (all malloc memory) the kernel then maps a zero
//! page on the next access, so the contents seen by the encoder do not
//! change; only residency does.
//! See: https://man7.org/linux/man-pages/man2/madvise.2.html (MADV_DONTNEED)

use std::ptr::NonNull;

const PAGE: usize = 4096;

/// Releases the all-zero pages of the allocation at `ptr` (from malloc /
/// posix_memalign). Returns the bytes released.
///
/// # Safety
/// `ptr` must be null or the start of a live heap allocation that no other
/// thread accesses during the call.
#[allow(unsafe_code)]
pub unsafe fn zero_pages(ptr: *mut u8) -> usize {
    let Some(base) = NonNull::new(ptr) else {
        return 0;
    };
    // SAFETY: `ptr` is a live malloc allocation (the caller's contract).
    let len = unsafe { nix::libc::malloc_usable_size(ptr.cast()) };
    let start = (base.as_ptr() as usize).div_ceil(PAGE) * PAGE;
    let end = (base.as_ptr() as usize + len) / PAGE * PAGE;
    let mut released = 0;
    let mut run: Option<usize> = None;
    let flush = |from: usize, to: usize, released: &mut usize| {
        if to > from
            && let Some(p) = NonNull::new(from as *mut std::ffi::c_void)
        {
            // SAFETY: [from, to) lies inside the allocation, is page
            // aligned and holds only zeros; DONTNEED keeps it reading zero.
            if unsafe {
                nix::sys::mman::madvise(p, to - from, nix::sys::mman::MmapAdvise::MADV_DONTNEED)
            }
            .is_ok()
            {
                *released += to - from;
            }
        }
    };
    let mut page = start;
    while page < end {
        // SAFETY: the page lies inside the allocation.
        let bytes = unsafe { std::slice::from_raw_parts(page as *const u64, PAGE / 8) };
        if bytes.iter().all(|w| *w == 0) {
            run.get_or_insert(page);
        } else if let Some(from) = run.take() {
            flush(from, page, &mut released);
        }
        page += PAGE;
    }
    if let Some(from) = run {
        flush(from, end, &mut released);
    }
    released
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn zero_pages_are_released_and_still_read_zero() {
        let mut v = vec![0u8; 64 * 4096];
        v[10 * 4096 + 7] = 1;
        // SAFETY: a live allocation owned by this test.
        let released = unsafe { super::zero_pages(v.as_mut_ptr()) };
        assert!(released >= 60 * 4096, "{released}");
        assert_eq!(v[10 * 4096 + 7], 1, "non-zero pages are kept");
        assert!(
            v.iter()
                .enumerate()
                .all(|(i, b)| *b == u8::from(i == 10 * 4096 + 7))
        );
    }
}
