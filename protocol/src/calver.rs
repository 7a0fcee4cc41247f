//! Agent release versions: `YYYY.MM.DD-N`, compared as the tuple
//! (year, month, day, N) — never as semver, which rejects `2026.06.28-1`
//! (leading zero) and sorts `2026.6.28-1` below `2026.6.28`.
//!
//! Development builds (`<cargo version>+<git rev>`) have no calendar
//! version; they are never newer than anything.
//! See: docs/controller-contract.md, "Versions".

use std::cmp::Ordering;

/// A parsed `YYYY.MM.DD-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalVer {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub n: u32,
}

impl CalVer {
    /// Parses exactly `^(\d{4})\.(\d{2})\.(\d{2})-(\d+)$` with a real month and day.
    pub fn parse(s: &str) -> Option<Self> {
        let (date, n) = s.split_once('-')?;
        let mut parts = date.split('.');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some()
            || !digits(y, 4)
            || !digits(m, 2)
            || !digits(d, 2)
            || n.is_empty()
            || n.len() > 9
            || !n.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let v = CalVer {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
            day: d.parse().ok()?,
            n: n.parse().ok()?,
        };
        ((1..=12).contains(&v.month) && (1..=31).contains(&v.day)).then_some(v)
    }
}

impl std::fmt::Display for CalVer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}.{:02}.{:02}-{}",
            self.year, self.month, self.day, self.n
        )
    }
}

/// How `candidate` relates to `installed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Newer,
    Same,
    /// Older, or not comparable as newer (a development build).
    NotNewer,
}

/// Compares two version strings under the rules above. Two identical
/// strings are the same version, development builds included.
pub fn relation(candidate: &str, installed: &str) -> Relation {
    if candidate == installed {
        return Relation::Same;
    }
    match (CalVer::parse(candidate), CalVer::parse(installed)) {
        (Some(c), Some(i)) => match c.cmp(&i) {
            Ordering::Greater => Relation::Newer,
            Ordering::Equal => Relation::Same,
            Ordering::Less => Relation::NotNewer,
        },
        // A release is newer than any development build.
        (Some(_), None) => Relation::Newer,
        (None, _) => Relation::NotNewer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_exact_pattern() {
        let v = CalVer::parse("2026.06.28-1").unwrap();
        assert_eq!((v.year, v.month, v.day, v.n), (2026, 6, 28, 1));
        assert_eq!(v.to_string(), "2026.06.28-1");
        for bad in [
            "2026.6.28-1",
            "2026.06.28",
            "2026.06.28-",
            "v2026.06.28-1",
            "2026.13.01-1",
            "2026.06.00-1",
            "0.1.0+abc",
            "2026.06.28-1-2",
            "2026.06.28.1-1",
        ] {
            assert_eq!(CalVer::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn compares_as_a_tuple_not_as_text_or_semver() {
        assert_eq!(relation("2026.06.28-10", "2026.06.28-9"), Relation::Newer);
        assert_eq!(relation("2026.07.01-1", "2026.06.30-9"), Relation::Newer);
        assert_eq!(relation("2025.12.31-5", "2026.01.01-1"), Relation::NotNewer);
        assert_eq!(relation("2026.06.28-1", "2026.06.28-1"), Relation::Same);
    }

    #[test]
    fn development_builds_are_never_newer() {
        assert_eq!(relation("0.1.0+abc", "2026.01.01-1"), Relation::NotNewer);
        assert_eq!(relation("0.2.0+def", "0.1.0+abc"), Relation::NotNewer);
        assert_eq!(relation("2026.01.01-1", "0.1.0+abc"), Relation::Newer);
        assert_eq!(relation("0.1.0+abc", "0.1.0+abc"), Relation::Same);
    }
}
