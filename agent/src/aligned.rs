//! Buffers that `read(2)` copies into, aligned to a cache line.
//!
//! NOTE: the kernel copies file data out of the page cache with `rep movsb`,
//! which on AMD Zen runs several times slower when the destination is not
//! aligned (here: fine at 32 and 64, slow at 8 and 16). Rust's `Vec` sits where the allocator puts it — with
//! musl's malloc, 16 bytes past a page boundary. Measured here (EPYC, 368 MB
//! from the page cache in 512 KiB reads): 0.05 s of system time into an
//! aligned buffer, 0.21–0.31 s at offsets 8 or 16. That was a fifth of the
//! writer benchmark's overhead beyond the encoder itself.
//! See: https://lunnova.dev/articles/ryzen-slow-short-rep-mov (`rep movsb`
//! with an unaligned destination on Zen 3: about 20x slower).

/// Bytes every buffer's first element is aligned to: one cache line.
pub const ALIGN: usize = 64;

/// A zeroed buffer of `len` elements whose first element starts on an
/// `ALIGN`-byte boundary. Derefs to the `len` elements.
pub struct Aligned<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    pub fn new(len: usize) -> Self {
        let pad = ALIGN / size_of::<T>().max(1);
        let buf = vec![T::default(); len + pad];
        // NOTE: `align_offset` may answer "impossible" (usize::MAX) only
        // for types whose size does not divide the alignment; the buffer
        // then stays as allocated, which is correct, just slower.
        let start = match buf.as_ptr().align_offset(ALIGN) {
            s if s <= pad => s,
            _ => 0,
        };
        Self { buf, start, len }
    }
}

impl<T> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl<T> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_cache_line_and_hold_exactly_len_zeroed_elements() {
        for len in [0, 1, 63, 4096 * 32] {
            let mut b = Aligned::<i32>::new(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            assert_eq!(b.as_ptr() as usize % ALIGN, 0, "len {len}");
            if let Some(last) = b.last_mut() {
                *last = 7;
            }
            let bytes = Aligned::<u8>::new(len);
            assert_eq!(bytes.as_ptr() as usize % ALIGN, 0);
            assert_eq!(bytes.len(), len);
        }
    }
}
