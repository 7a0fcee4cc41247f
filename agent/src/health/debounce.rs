//! Hysteresis for one health signal: raised after `raise_after`
//! consecutive bad observations, cleared after `clear_after` good ones; a
//! raised signal whose severity changes for `raise_after` observations is
//! raised again at the new severity. An observation that is neither (a
//! value inside a threshold's dead band, or nothing measured) keeps the
//! state and restarts the count.

use rakkr_protocol::Severity;

/// One observation of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Bad(Severity),
    Good,
    /// Neither: the state stays, the count restarts.
    Between,
}

/// A change of state: raised at a severity, or cleared; with the number
/// of consecutive observations that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised(Severity, u32),
    Cleared(u32),
}

#[derive(Debug, Clone)]
pub struct Debounce {
    raise_after: u32,
    clear_after: u32,
    active: Option<Severity>,
    /// What the current run of observations asks for, and its length.
    pending: Option<Option<Severity>>,
    streak: u32,
}

impl Debounce {
    pub fn new(raise_after: u32, clear_after: u32) -> Self {
        Self {
            raise_after: raise_after.max(1),
            clear_after: clear_after.max(1),
            active: None,
            pending: None,
            streak: 0,
        }
    }

    /// New run lengths (a pushed configuration); the run so far counts.
    pub fn set_counts(&mut self, raise_after: u32, clear_after: u32) {
        self.raise_after = raise_after.max(1);
        self.clear_after = clear_after.max(1);
    }

    /// The severity while raised.
    pub fn active(&self) -> Option<Severity> {
        self.active
    }

    /// Consecutive observations so far toward a change (0: none pending).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    pub fn observe(&mut self, o: Observation) -> Option<Change> {
        let want = match o {
            Observation::Between => {
                self.pending = None;
                self.streak = 0;
                return None;
            }
            Observation::Bad(s) => Some(s),
            Observation::Good => None,
        };
        if want == self.active {
            self.pending = None;
            self.streak = 0;
            return None;
        }
        if self.pending == Some(want) {
            self.streak += 1;
        } else {
            self.pending = Some(want);
            self.streak = 1;
        }
        let needed = if want.is_some() {
            self.raise_after
        } else {
            self.clear_after
        };
        if self.streak < needed {
            return None;
        }
        let n = self.streak;
        self.active = want;
        self.pending = None;
        self.streak = 0;
        Some(match want {
            Some(s) => Change::Raised(s, n),
            None => Change::Cleared(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::*;
    use Severity::*;

    fn run(d: &mut Debounce, obs: &[Observation]) -> Vec<Option<Change>> {
        obs.iter().map(|o| d.observe(*o)).collect()
    }

    #[test]
    fn raised_after_n_bad_and_cleared_after_n_good() {
        let mut d = Debounce::new(3, 2);
        let got = run(
            &mut d,
            &[Bad(Warning), Bad(Warning), Bad(Warning), Good, Good],
        );
        assert_eq!(
            got,
            [
                None,
                None,
                Some(Change::Raised(Warning, 3)),
                None,
                Some(Change::Cleared(2))
            ]
        );
    }

    #[test]
    fn a_run_shorter_than_n_changes_nothing() {
        let mut d = Debounce::new(3, 3);
        let got = run(
            &mut d,
            &[Bad(Warning), Bad(Warning), Good, Bad(Warning), Bad(Warning)],
        );
        assert!(got.iter().all(Option::is_none), "{got:?}");
        assert_eq!(d.active(), None);
        assert_eq!(d.streak(), 2);
        // Raised: one good observation in between does not clear it.
        run(&mut d, &[Bad(Warning)]);
        assert_eq!(d.active(), Some(Warning));
        let got = run(&mut d, &[Good, Bad(Warning), Good, Good]);
        assert!(got.iter().all(Option::is_none), "{got:?}");
        assert_eq!(d.active(), Some(Warning));
    }

    #[test]
    fn a_new_severity_is_raised_again_and_between_keeps_the_state() {
        let mut d = Debounce::new(2, 2);
        run(&mut d, &[Bad(Warning), Bad(Warning)]);
        let got = run(
            &mut d,
            &[Bad(Critical), Between, Bad(Critical), Bad(Critical)],
        );
        assert_eq!(got, [None, None, None, Some(Change::Raised(Critical, 2))]);
        let got = run(&mut d, &[Between, Between, Between]);
        assert!(got.iter().all(Option::is_none));
        assert_eq!(d.active(), Some(Critical));
    }
}
