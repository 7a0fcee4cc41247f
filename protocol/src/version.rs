//! Protocol version negotiation.

use crate::message::VersionRange;

/// The versions this build of the protocol crate speaks.
pub const SUPPORTED: VersionRange = VersionRange { min: 1, max: 4 };

/// The first version with health events (`EventBody::Health`) and the
/// clock probe (`ClockProbe`/`ClockReply`); see PROTOCOL.md §5.5.
pub const HEALTH: u16 = 2;

/// The first version with pushed configuration (`Configure`/`Configured`);
/// see PROTOCOL.md §5.7.
pub const CONFIG: u16 = 3;

/// The first version with several takes at once (`StartTakeWith`,
/// `RunningTakes`); see PROTOCOL.md §5.8.
pub const TAKES: u16 = 3;

/// The first version with console events (`EventBody::Console`); see
/// PROTOCOL.md §5.9.
pub const CONSOLE: u16 = 4;

/// The highest version in both ranges, if any.
pub fn negotiate(agent: VersionRange, controller: VersionRange) -> Option<u16> {
    let high = agent.max.min(controller.max);
    let low = agent.min.max(controller.min);
    (agent.min <= agent.max && controller.min <= controller.max && low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u16, max: u16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn picks_highest_common() {
        assert_eq!(negotiate(r(1, 3), r(2, 5)), Some(3));
        assert_eq!(negotiate(r(1, 1), r(1, 1)), Some(1));
    }

    #[test]
    fn no_overlap_or_inverted_range_gives_none() {
        assert_eq!(negotiate(r(1, 1), r(2, 3)), None);
        assert_eq!(negotiate(r(4, 5), r(2, 3)), None);
        assert_eq!(negotiate(r(3, 1), r(1, 3)), None);
    }
}
