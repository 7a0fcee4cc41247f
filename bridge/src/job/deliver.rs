//! What to deliver next for a job, from what the node says of its takes
//! (so a restarted bridge, or another one, knows as much as the one that
//! started the job): chunk N is the job's N-th segment (0-based) counting
//! across its takes in order (a crash continues a take as `<job>-r2`,
//! whose segments follow the first's). A segment is delivered once the
//! node has received a receipt for every file of it; the first one not
//! delivered is next, when it is closed and hashed and known to be the
//! last (its take ended and nothing follows) or not (the take has
//! recorded past it). A job without chunks is one file of every segment,
//! once every take has ended.

use rakkr_protocol::TakeFileState;

use super::node::JobTake;

/// The files of one take that go into a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub take: String,
    pub files: Vec<TakeFileState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Chunk `index` (`None`: the job's one file), the last when `last`.
    Deliver {
        index: Option<u32>,
        last: bool,
        parts: Vec<Part>,
    },
    /// Nothing ready yet, and why.
    Wait(&'static str),
    /// Everything is delivered.
    Done,
    /// Every take ended without a second of audio.
    Empty,
}

fn hashed(files: &[TakeFileState], channels: usize) -> bool {
    files.len() == channels && files.iter().all(|f| !f.sha256.is_empty())
}

/// The next delivery of a job whose takes record `channels` channels.
pub fn next(takes: &[JobTake], channels: usize, chunked: bool) -> Next {
    let all_ended = takes.last().is_some_and(JobTake::ended);
    if takes.iter().all(|t| t.segments.is_empty()) {
        return if all_ended {
            Next::Empty
        } else {
            Next::Wait("no segment closed yet")
        };
    }
    if !chunked {
        let pending = takes
            .iter()
            .flat_map(|t| t.segments.values().flatten())
            .any(|f| !f.received);
        if !pending {
            return Next::Done;
        }
        if !all_ended {
            return Next::Wait("recording (delivered whole at the end)");
        }
        if !takes
            .iter()
            .all(|t| t.segments.values().all(|f| hashed(f, channels)))
        {
            return Next::Wait("the last segment is being hashed");
        }
        let parts = takes
            .iter()
            .filter(|t| !t.segments.is_empty())
            .map(|t| Part {
                take: t.summary.take_id.clone(),
                files: t.segments.values().flatten().cloned().collect(),
            })
            .collect();
        return Next::Deliver {
            index: None,
            last: true,
            parts,
        };
    }
    let mut index = 0u32;
    for (i, t) in takes.iter().enumerate() {
        let last_take = i + 1 == takes.len();
        let last_segment = t.segments.keys().next_back().copied();
        for (seg, files) in &t.segments {
            if files.iter().all(|f| f.received) && !files.is_empty() {
                index += 1;
                continue;
            }
            if !hashed(files, channels) {
                return Next::Wait("the segment is being hashed");
            }
            let end = files
                .iter()
                .map(|f| f.first_sample + f.samples)
                .max()
                .unwrap_or(0);
            let last = t.ended() && last_take && Some(*seg) == last_segment;
            if !t.ended() && t.live_frames <= end {
                return Next::Wait("the take may end with this segment");
            }
            return Next::Deliver {
                index: Some(index),
                last,
                parts: vec![Part {
                    take: t.summary.take_id.clone(),
                    files: files.clone(),
                }],
            };
        }
    }
    if all_ended {
        Next::Done
    } else {
        Next::Wait("recording")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rakkr_protocol::{TakeFormat, TakeSummary};

    use super::*;

    fn file(take: &str, seg: u32, ch: u16, received: bool, hashed: bool) -> TakeFileState {
        TakeFileState {
            file: format!("{ch:02}-{take}-s{seg:03}.flac"),
            segment: seg,
            channels: vec![ch],
            first_sample: u64::from(seg - 1) * 100,
            samples: 100,
            size: 10,
            sha256: if hashed { "ab".into() } else { String::new() },
            received,
        }
    }

    /// A take of 2 channels with segments given as (received, hashed).
    fn take(id: &str, status: &str, segs: &[(bool, bool)], live: u64) -> JobTake {
        let mut segments = BTreeMap::new();
        for (i, (r, h)) in segs.iter().enumerate() {
            let s = i as u32 + 1;
            segments.insert(s, vec![file(id, s, 1, *r, *h), file(id, s, 2, *r, *h)]);
        }
        JobTake {
            summary: TakeSummary {
                take_id: id.into(),
                status: status.into(),
                device: "hw:X32".into(),
                channels: 2,
                sample_rate: 48_000,
                format: TakeFormat::Flac,
                segments: segs.len() as u32,
                frames: 0,
                files: 0,
                received: 0,
                bytes: 0,
            },
            segments,
            live_frames: live,
        }
    }

    fn index(n: &Next) -> (Option<u32>, bool) {
        match n {
            Next::Deliver { index, last, .. } => (*index, *last),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunks_go_in_segment_order_and_the_last_says_so() {
        let t = take("job_a", "recording", &[(true, true), (false, true)], 201);
        assert_eq!(index(&next(&[t], 2, true)), (Some(1), false));
        // Closed, but the take has not recorded past it: it may be the last.
        let t = take("job_a", "recording", &[(false, true)], 100);
        assert_eq!(
            next(&[t], 2, true),
            Next::Wait("the take may end with this segment")
        );
        let t = take("job_a", "complete", &[(true, true), (false, true)], 0);
        assert_eq!(index(&next(&[t], 2, true)), (Some(1), true));
        let t = take("job_a", "complete", &[(true, true), (true, true)], 0);
        assert_eq!(next(&[t], 2, true), Next::Done);
        let t = take("job_a", "recording", &[(false, false)], 500);
        assert_eq!(
            next(&[t], 2, true),
            Next::Wait("the segment is being hashed")
        );
    }

    #[test]
    fn a_continuation_numbers_its_chunks_after_the_interrupted_take() {
        let a = take("job_a", "recovered", &[(true, true), (false, true)], 0);
        let b = take("job_a-r2", "recording", &[(false, true)], 150);
        let takes = [a, b];
        assert_eq!(index(&next(&takes, 2, true)), (Some(1), false));
        let mut takes = takes;
        for f in takes[0].segments.get_mut(&2).unwrap() {
            f.received = true;
        }
        assert_eq!(index(&next(&takes, 2, true)), (Some(2), false));
    }

    #[test]
    fn an_unchunked_job_is_one_file_once_every_take_ended() {
        let t = take("job_b", "recording", &[(false, true)], 150);
        assert!(matches!(next(&[t], 2, false), Next::Wait(_)));
        let t = take("job_b", "complete", &[(false, true), (false, true)], 0);
        match next(&[t], 2, false) {
            Next::Deliver { index, last, parts } => {
                assert_eq!((index, last), (None, true));
                assert_eq!(parts[0].files.len(), 4);
            }
            other => panic!("{other:?}"),
        }
        let t = take("job_b", "complete", &[], 0);
        assert_eq!(next(&[t], 2, false), Next::Empty);
    }
}
