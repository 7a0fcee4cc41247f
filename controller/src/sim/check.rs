//! Checks of what the agent recorded from the known x32 test signal.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::x32_sample;

/// The signal's frame counter wraps at 2^18 frames (5.4 s at 48 kHz).
pub const WRAP: u64 = 1 << 18;

/// Where the take's frames sit in the signal: take frame `n` is signal
/// frame `base + n + (jumps at or before n)`, modulo [`WRAP`].
struct Position<'a> {
    base: u64,
    /// (take frame, signal frames skipped there and before), by frame.
    jumps: Vec<(u64, u64)>,
    excuses: &'a Excuses<'a>,
    /// Frames of each manifest gap not yet matched to a jump.
    gap_left: Vec<u64>,
    /// Holes of the unplaced budget used so far, and frames of jumps the
    /// agent reported.
    unplaced_used: u64,
    reported: u64,
    /// First frames of torn cycles, and the run of one being checked
    /// (channel, last frame, frames so far).
    torn_starts: Vec<u64>,
    torn_run: Option<(usize, u64, u64)>,
    /// The channel checked first at every frame: its jumps move the
    /// position; only the others can be torn from it.
    reference: usize,
}

impl<'a> Position<'a> {
    /// The take's first frame is signal frame `base`; channel `reference`
    /// is checked first at every frame.
    fn new(base: u64, reference: usize, excuses: &'a Excuses<'a>) -> Self {
        Self {
            base,
            jumps: Vec::new(),
            excuses,
            gap_left: excuses.gaps.iter().map(|g| g.frames).collect(),
            unplaced_used: 0,
            reported: 0,
            torn_starts: Vec::new(),
            torn_run: None,
            reference,
        }
    }

    /// Channel `c` holds at take frame `n` a sample of its own a few whole
    /// periods from where the signal is (`off`, forward, modulo the wrap):
    /// accepted as part of a torn cycle — for at most a period per run,
    /// each cycle once from the device's unplaced budget.
    ///
    /// NOTE: never the reference channel: a hole in the signal would read
    /// as its torn cycle for a period, and place the jump a period late
    /// for every other channel. Torn itself, the reference channel costs
    /// two jumps (there and back).
    fn torn(&mut self, c: usize, n: u64, off: u64) -> bool {
        let period = self.excuses.torn_period;
        let periods = |o: u64| o.is_multiple_of(period.max(1)) && o / period.max(1) <= 4;
        if period == 0 || c == self.reference || !(periods(off) || periods(WRAP - off)) {
            return false;
        }
        if let Some((rc, last, len)) = self.torn_run
            && rc == c
            && last + 1 == n
        {
            if len >= period {
                return false;
            }
            self.torn_run = Some((c, n, len + 1));
            return true;
        }
        if !self.torn_starts.contains(&n) {
            if self.unplaced_used >= self.excuses.unplaced {
                return false;
            }
            self.unplaced_used += 1;
            self.torn_starts.push(n);
        }
        self.torn_run = Some((c, n, 1));
        true
    }

    fn expected(&self, n: u64) -> u64 {
        let i = self.jumps.partition_point(|(at, _)| *at <= n);
        let skipped = i.checked_sub(1).map_or(0, |i| self.jumps[i].1);
        (self.base + n + skipped) % WRAP
    }

    /// At take frame `n` the content jumped from where it should be to
    /// signal frame `actual`: accepted when the device logged exactly that
    /// drop (same start and length, modulo the wrap), when the manifest
    /// holds a gap there (audio the agent lost and said so), or within the
    /// budget of holes the device reported without a position.
    fn excuse(&mut self, n: u64, actual: u64) -> bool {
        if self.jumps.iter().any(|(at, _)| *at == n) {
            return false;
        }
        let expected = self.expected(n);
        let jump = (actual + WRAP - expected) % WRAP;
        let logged = self
            .excuses
            .drops
            .iter()
            .any(|r| r.start % WRAP == expected && (r.end - r.start) % WRAP == jump);
        // A gap covers jumps near it up to its size (give or take the
        // slack); a lost device's, whatever the restarted signal does.
        let gap = (!logged)
            .then(|| {
                self.excuses
                    .gaps
                    .iter()
                    .zip(&self.gap_left)
                    .position(|(g, left)| {
                        g.at.abs_diff(n) <= GAP_SLACK && (g.device_lost || jump <= left + GAP_SLACK)
                    })
            })
            .flatten();
        if let Some(i) = gap {
            self.gap_left[i] = self.gap_left[i].saturating_sub(jump);
        }
        let reported = gap.is_some();
        let unplaced = !logged && !reported && self.unplaced_used < self.excuses.unplaced;
        if !(logged || reported || unplaced) {
            return false;
        }
        self.unplaced_used += u64::from(unplaced);
        if reported {
            self.reported += jump;
        }
        let i = self.jumps.partition_point(|(at, _)| *at <= n);
        let before = i.checked_sub(1).map_or(0, |i| self.jumps[i].1);
        self.jumps.insert(i, (n, before + jump));
        for j in &mut self.jumps[i + 1..] {
            j.1 += jump;
        }
        true
    }
}

/// How far (frames) a manifest gap may sit from the jump it tells of: the
/// capture clock places a loss to a period or two.
const GAP_SLACK: u64 = 512;

/// A gap the manifest records: audio the agent lost and said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub at: u64,
    pub frames: u64,
    /// The device went away: the signal may restart anywhere after it.
    pub device_lost: bool,
}

/// The gaps of manifest `m`.
pub fn manifest_gaps(m: &serde_json::Value) -> Vec<Gap> {
    m["gaps"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .map(|g| Gap {
                    at: g["atSample"].as_u64().unwrap_or(0),
                    frames: g["framesLost"].as_u64().unwrap_or(0),
                    device_lost: g["cause"] == "device lost",
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What may explain a jump in the content.
#[derive(Debug, Clone, Default)]
pub struct Excuses<'a> {
    /// Signal frames the device logged dropping (the paced console's
    /// [`super::DropLog`]): a jump must be exactly one of them.
    pub drops: &'a [std::ops::Range<u64>],
    /// Gaps the agent recorded (see [`manifest_gaps`]); empty for the
    /// strict check that only the device may lose audio.
    pub gaps: Vec<Gap>,
    /// Holes the device reported without saying where (the JACK console's
    /// xruns and missed cycles).
    pub unplaced: u64,
    /// The device's period when it can tear a cycle (0: it cannot): the
    /// JACK console, in an xrun, can hand over some ports' buffers before
    /// its feeder has written them, so a few channels of a cycle are a
    /// period or more behind the rest. (A console's USB frames cannot.)
    pub torn_period: u64,
}

/// What [`check_content_detail`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// Frames of the longest channel.
    pub frames: u64,
    /// Signal frames the device dropped inside the take (excused jumps).
    pub device_dropped: u64,
    /// Of them, frames in jumps the manifest's gaps tell of.
    pub reported: u64,
    /// Holes excused from the unplaced budget.
    pub unplaced_used: u64,
}

/// Decodes every file of the manifest `m` of the take in `take`, checks
/// each file's SHA-256 and sample count, and that every channel continues
/// the known signal from the frame the take started at — except where the
/// device itself dropped audio (`drops`, the simulated console's
/// [`super::DropLog`]): a jump in the content is accepted only when
/// the device logged exactly it, so the check fails only for audio the
/// agent lost. Returns the frames of the longest channel (all are equal
/// but in a recovered take).
pub fn check_content(take: &Path, m: &serde_json::Value, drops: &[std::ops::Range<u64>]) -> u64 {
    check_content_detail(take, m, drops).frames
}

/// [`check_content`], also saying how much the device dropped.
pub fn check_content_detail(
    take: &Path,
    m: &serde_json::Value,
    drops: &[std::ops::Range<u64>],
) -> Content {
    check_content_excusing(
        take,
        m,
        &Excuses {
            drops,
            ..Excuses::default()
        },
    )
}

/// [`check_content_detail`] where jumps may also be losses the agent
/// reported, or holes the device reported without a position: the check
/// fails for audio lost silently.
pub fn check_content_excusing(
    take: &Path,
    m: &serde_json::Value,
    excuses: &Excuses<'_>,
) -> Content {
    let mut pos: Option<Position<'_>> = None;
    let mut total = HashMap::<u64, u64>::new();
    for f in m["files"].as_array().expect("manifest shape") {
        let path = take.join(f["file"].as_str().expect("manifest shape"));
        assert_eq!(
            f["sha256"].as_str().expect("manifest shape"),
            hex::encode(Sha256::digest(
                std::fs::read(&path).expect("manifest shape")
            )),
            "{}",
            path.display()
        );
        // The device channel each file channel carries: the take's channel
        // n is device channel n, or `deviceChannels[n - 1]` for a take of
        // chosen channels.
        let device: Vec<u64> = m["deviceChannels"]
            .as_array()
            .map(|d| d.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        let chans: Vec<usize> = f["channels"]
            .as_array()
            .expect("manifest shape")
            .iter()
            .map(|c| {
                let n = c.as_u64().expect("manifest shape") as usize;
                device.get(n - 1).map_or(n, |d| *d as usize) - 1
            })
            .collect();
        let (ch, samples) = super::decode::interleaved_i32(&path);
        assert_eq!(usize::from(ch), chans.len());
        let at = f["firstSample"].as_u64().expect("manifest shape");
        assert_eq!(
            samples.len() as u64,
            f["samples"].as_u64().expect("manifest shape") * u64::from(ch),
            "{}",
            path.display()
        );
        // The FIFO may have been read from before the take: the first
        // sample names the frame the take started at.
        let p = pos.get_or_insert_with(|| {
            Position::new(((samples[0] >> 8) & 0x3ffff) as u64, chans[0], excuses)
        });
        for (i, s) in samples.iter().enumerate() {
            let (c, n) = (chans[i % chans.len()], at + (i / chans.len()) as u64);
            if *s == x32_sample(c, p.expected(n)) {
                continue;
            }
            let actual = ((*s >> 8) & 0x3ffff) as u64;
            let same_channel = ((*s as u32) >> 26) as usize == c;
            let off = (actual + WRAP - p.expected(n)) % WRAP;
            if same_channel && p.torn(c, n, off) {
                continue;
            }
            if !(same_channel && p.excuse(n, actual) && *s == x32_sample(c, p.expected(n))) {
                panic!(
                    "{}: channel {} differs at take frame {n} (signal frame {actual} where {} was due; the device logged drops {:?}, the excused gaps {:?}, {} of {} unplaced device holes used; the take reported gaps {} and {} xruns)",
                    path.display(),
                    c + 1,
                    p.expected(n),
                    excuses.drops,
                    excuses.gaps,
                    p.unplaced_used,
                    excuses.unplaced,
                    m["gaps"],
                    m["xruns"],
                );
            }
        }
        *total.entry(chans[0] as u64).or_default() +=
            f["samples"].as_u64().expect("manifest shape");
    }
    // After a crash each file of the open segment keeps what it holds
    // intact, on its own: channels may end apart, never start apart.
    let frames = total.values().copied().max().unwrap_or(0);
    if m["status"] != "recovered" {
        assert!(
            total.values().all(|t| *t == frames),
            "every channel holds the same frames: {total:?}"
        );
    }
    Content {
        frames,
        device_dropped: pos.as_ref().and_then(|p| p.jumps.last()).map_or(0, |j| j.1),
        reported: pos.as_ref().map_or(0, |p| p.reported),
        unplaced_used: pos.as_ref().map_or(0, |p| p.unplaced_used),
    }
}

/// The manifest of the take in `take` (panics with the path when it cannot
/// be read: a check's precondition).
pub fn manifest(take: &Path) -> serde_json::Value {
    let path = take.join("manifest.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The signal's frame counter (modulo [`WRAP`]) at the first or the last
/// frame of channel 1 of the take in `take` with manifest `m`.
pub fn signal_at(take: &Path, m: &serde_json::Value, last: bool) -> u64 {
    let files = m["files"].as_array().expect("manifest shape");
    let file = if last {
        files.iter().rfind(|f| f["channels"][0] == 1)
    } else {
        files.first()
    }
    .expect("a take with audio");
    let (ch, s) =
        super::decode::interleaved_i32(&take.join(file["file"].as_str().expect("manifest shape")));
    let i = if last { s.len() - usize::from(ch) } else { 0 };
    ((s[i] >> 8) & 0x3ffff) as u64
}

/// Signal frames between the last frame of one take and the first of the
/// next: the audio neither holds (the counter wraps every 2^18 frames, so
/// an interval longer than 5.4 s reads short).
pub fn signal_between(a: (&Path, &serde_json::Value), b: (&Path, &serde_json::Value)) -> u64 {
    (signal_at(b.0, b.1, false) + WRAP - signal_at(a.0, a.1, true) - 1) % WRAP
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position<'a>(excuses: &'a Excuses<'a>) -> Position<'a> {
        Position::new(100, 0, excuses)
    }

    #[test]
    fn a_jump_the_device_logged_is_excused_exactly() {
        let drops = vec![std::ops::Range {
            start: 1_100,
            end: 1_356,
        }];
        let e = Excuses {
            drops: &drops,
            ..Excuses::default()
        };
        let mut p = position(&e);
        // Take frame 1000 is signal frame 1100; 256 frames went missing.
        assert!(!p.excuse(1_000, 1_355), "a jump of another size");
        assert!(p.excuse(1_000, 1_356));
        assert_eq!(p.expected(999), 1_099);
        assert_eq!(p.expected(1_001), 1_357);
        assert_eq!(p.reported, 0);
    }

    #[test]
    fn a_silent_jump_is_refused() {
        let e = Excuses::default();
        let mut p = position(&e);
        assert!(!p.excuse(5_000, 5_100 + 1_280));
    }

    #[test]
    fn a_manifest_gap_covers_jumps_near_it_up_to_its_size() {
        let e = Excuses {
            gaps: vec![Gap {
                at: 5_000,
                frames: 1_000,
                device_lost: false,
            }],
            ..Excuses::default()
        };
        let mut p = position(&e);
        assert!(!p.excuse(9_000, 9_100 + 256), "too far from the gap");
        assert!(p.excuse(5_200, 5_300 + 1_024));
        assert_eq!(p.reported, 1_024);
        // Its frames are spent: a second jump beside it is not covered.
        assert!(!p.excuse(5_400, p.expected(5_400) + 1_024));
        assert_eq!(p.expected(5_400), 5_500 + 1_024);
    }

    #[test]
    fn a_lost_device_covers_a_restarted_signal_and_unplaced_holes_are_counted() {
        let e = Excuses {
            gaps: vec![Gap {
                at: 20_000,
                frames: 150_000,
                device_lost: true,
            }],
            unplaced: 1,
            ..Excuses::default()
        };
        let mut p = position(&e);
        // The restarted console counts from 0 again.
        assert!(p.excuse(20_000, 0));
        assert_eq!(p.expected(20_001), 1);
        assert!(p.excuse(30_000, p.expected(30_000) + 256));
        assert_eq!(p.unplaced_used, 1);
        assert!(!p.excuse(40_000, p.expected(40_000) + 256), "budget spent");
    }

    #[test]
    fn a_torn_cycle_costs_one_hole_for_all_its_channels_and_lasts_a_period() {
        let e = Excuses {
            unplaced: 1,
            torn_period: 256,
            ..Excuses::default()
        };
        let mut p = position(&e);
        let behind = WRAP - 256;
        // Channel 13 a period behind for the cycle from frame 1_024 ...
        for n in 1_024..1_280 {
            assert!(p.torn(12, n, behind), "frame {n}");
        }
        // ... one frame more is not a torn cycle but a shift.
        assert!(!p.torn(12, 1_280, behind));
        // Channel 14 torn in the same cycle: no further hole.
        assert!(p.torn(13, 1_024, behind));
        assert_eq!(p.unplaced_used, 1);
        // Another cycle: the budget is spent; an odd offset never passes.
        assert!(!p.torn(12, 5_000, behind));
        assert!(!p.torn(13, 1_025, 100));
    }

    /// Seen in a 30-minute soak: every channel jumped a period at N (a
    /// hole), and channels 6 and 7 were a period ahead for the cycle after.
    #[test]
    fn a_hole_beside_a_torn_cycle_is_placed_where_it_is() {
        let e = Excuses {
            unplaced: 10,
            torn_period: 256,
            ..Excuses::default()
        };
        let mut p = position(&e);
        let (n, hole) = (10_000u64, 256u64);
        // Channel 1 (the reference) first: the hole is a jump, not torn.
        assert!(!p.torn(0, n, hole));
        assert!(p.excuse(n, p.expected(n) + hole));
        assert_eq!(p.jumps, vec![(n, hole)]);
        // Channel 6: follows the model, then a period ahead for a cycle.
        for k in n..n + 256 {
            assert_eq!(p.expected(k), 100 + k + hole);
        }
        for k in n + 256..n + 512 {
            assert!(p.torn(5, k, 256), "frame {k}");
        }
        assert_eq!(p.unplaced_used, 2);
    }

    #[test]
    fn without_a_torn_period_nothing_is_torn() {
        let e = Excuses {
            unplaced: 5,
            ..Excuses::default()
        };
        let mut p = position(&e);
        assert!(!p.torn(0, 10, WRAP - 256));
    }
}
