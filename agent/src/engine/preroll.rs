//! Pre-roll: the last few seconds of captured audio, kept while no take
//! records, so a take can start before its start command. A fixed-size
//! circular buffer allocated once (only when pre-roll is configured).

#[derive(Debug)]
pub struct PreRoll {
    buf: Vec<i32>,
    /// Next write index.
    head: usize,
    /// Valid samples (≤ buf.len()).
    len: usize,
}

impl PreRoll {
    /// Holds `frames` frames of `channels` channels.
    pub fn new(frames: usize, channels: usize) -> Self {
        Self {
            buf: vec![0; frames * channels],
            head: 0,
            len: 0,
        }
    }

    pub fn push(&mut self, block: &[i32]) {
        let cap = self.buf.len();
        if cap == 0 {
            return;
        }
        let block = &block[block.len().saturating_sub(cap)..];
        for s in block {
            self.buf[self.head] = *s;
            self.head = (self.head + 1) % cap;
        }
        self.len = (self.len + block.len()).min(cap);
    }

    /// The newest `samples` samples (oldest first).
    ///
    /// NOTE: the buffer keeps them: a take starting beside another (two
    /// scheduled for the same frame) has the same pre-roll to reach into.
    pub fn last(&self, samples: usize) -> Vec<i32> {
        let cap = self.buf.len();
        let n = samples.min(self.len);
        let start = (self.head + cap - n) % cap.max(1);
        (0..n).map(|i| self.buf[(start + i) % cap]).collect()
    }

    /// Frames held.
    pub fn len_frames(&self, channels: usize) -> usize {
        self.len / channels.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_frames_in_order() {
        let mut p = PreRoll::new(3, 2);
        p.push(&[1, 1, 2, 2]);
        p.push(&[3, 3, 4, 4, 5, 5]);
        assert_eq!(p.last(4), vec![4, 4, 5, 5]);
        assert_eq!(p.last(4), vec![4, 4, 5, 5], "kept for the next take");
        assert_eq!(p.len_frames(2), 3);
        let mut none = PreRoll::new(0, 2);
        none.push(&[1, 2]);
        assert!(none.last(2).is_empty());
    }
}
