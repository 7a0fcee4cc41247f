//! Which device channels a take records: a list the controller names
//! (any order, no repeats), or the device's first N.

use rakkr_protocol::FailureCode;

use super::Refusal;

/// The device channels (0-based) a take records: `list` (1-based, in its
/// order), else the first `first` (else every one) of the `have` the
/// device delivers.
pub(super) fn channels(
    list: Option<&[u16]>,
    first: Option<u16>,
    have: u16,
) -> Result<Vec<usize>, Refusal> {
    let bad = |m: String| Err(Refusal::new(FailureCode::InvalidArgument, m));
    match list {
        Some([]) | None => match first.unwrap_or(have) {
            n if n == 0 || n > have => {
                bad(format!("{n} channels asked; the device delivers {have}"))
            }
            n => Ok((0..usize::from(n)).collect()),
        },
        Some(list) => {
            let mut seen = std::collections::BTreeSet::new();
            for &c in list {
                if c == 0 || c > have {
                    return bad(format!(
                        "channel {c} asked; the device delivers channels 1..={have}"
                    ));
                }
                if !seen.insert(c) {
                    return bad(format!("channel {c} is asked twice"));
                }
            }
            Ok(list.iter().map(|&c| usize::from(c) - 1).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_counts_and_refusals() {
        assert_eq!(channels(Some(&[17, 1, 9]), None, 32).unwrap(), [16, 0, 8]);
        assert_eq!(channels(None, Some(2), 32).unwrap(), [0, 1]);
        assert_eq!(channels(Some(&[]), None, 3).unwrap(), [0, 1, 2]);
        let msg = |r: Result<Vec<usize>, Refusal>| r.unwrap_err().message;
        assert!(msg(channels(Some(&[33]), None, 32)).contains("1..=32"));
        assert!(msg(channels(Some(&[0]), None, 32)).contains("channel 0"));
        assert!(msg(channels(Some(&[2, 2]), None, 32)).contains("twice"));
        assert!(msg(channels(None, Some(40), 32)).contains("40 channels"));
    }
}
