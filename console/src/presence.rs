//! Whether the console is there: found, lost, back, swapped, firmware
//! changed. A state machine over answers and time (milliseconds from any
//! monotonic origin); no I/O, no clock of its own.

use crate::model::Identity;

/// An edge to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    Found(Identity),
    Lost { console: Identity, silent_ms: u64 },
    Back { console: Identity, away_ms: u64 },
    Swapped { from: Identity, to: Identity },
    Firmware { console: Identity, from: String },
}

#[derive(Debug, Clone, Default)]
pub struct Presence {
    known: Option<Identity>,
    last_seen_ms: u64,
    /// When it went silent (reported lost).
    lost_at_ms: Option<u64>,
}

impl Presence {
    /// The console answered with `identity` at `now_ms`.
    pub fn seen(&mut self, identity: Identity, now_ms: u64) -> Vec<Edge> {
        let mut edges = Vec::new();
        let lost = self.lost_at_ms.take();
        match self.known.take() {
            None => edges.push(Edge::Found(identity.clone())),
            Some(old) if !old.same_console(&identity) => edges.push(Edge::Swapped {
                from: old,
                to: identity.clone(),
            }),
            Some(old) => {
                if let Some(at) = lost {
                    edges.push(Edge::Back {
                        console: identity.clone(),
                        away_ms: now_ms.saturating_sub(at),
                    });
                }
                if old.firmware != identity.firmware {
                    edges.push(Edge::Firmware {
                        console: identity.clone(),
                        from: old.firmware,
                    });
                }
            }
        }
        self.known = Some(identity);
        self.last_seen_ms = now_ms;
        edges
    }

    /// The known console answered something (not its identity): it is
    /// there. A lost console comes back only by its identity (`seen`).
    pub fn touch(&mut self, now_ms: u64) {
        if self.known.is_some() && self.lost_at_ms.is_none() {
            self.last_seen_ms = now_ms;
        }
    }

    /// Time passed: lost once silent for `lost_after_ms`.
    pub fn tick(&mut self, now_ms: u64, lost_after_ms: u64) -> Option<Edge> {
        let known = self.known.as_ref()?;
        let silent = now_ms.saturating_sub(self.last_seen_ms);
        if self.lost_at_ms.is_some() || silent < lost_after_ms {
            return None;
        }
        self.lost_at_ms = Some(now_ms);
        Some(Edge::Lost {
            console: known.clone(),
            silent_ms: silent,
        })
    }

    pub fn is_lost(&self) -> bool {
        self.lost_at_ms.is_some()
    }

    pub fn last_seen_ms(&self) -> Option<u64> {
        self.known.as_ref().map(|_| self.last_seen_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Family;

    fn id(model: &str, fw: &str) -> Identity {
        Identity {
            family: Family::X32,
            model: model.into(),
            name: "FOH".into(),
            firmware: fw.into(),
            ip: "10.0.0.5".into(),
            serial: None,
            mac: None,
        }
    }

    #[test]
    fn found_lost_back_firmware_and_swapped_each_once() {
        let mut p = Presence::default();
        assert!(matches!(p.seen(id("X32", "4.06"), 0)[..], [Edge::Found(_)]));
        assert!(p.seen(id("X32", "4.06"), 1000).is_empty());
        assert_eq!(p.tick(5000, 15_000), None);
        assert!(matches!(
            p.tick(16_000, 15_000),
            Some(Edge::Lost {
                silent_ms: 15_000,
                ..
            })
        ));
        assert_eq!(p.tick(40_000, 15_000), None);
        let back = p.seen(id("X32", "4.13"), 46_000);
        assert!(matches!(
            back[..],
            [
                Edge::Back {
                    away_ms: 30_000,
                    ..
                },
                Edge::Firmware { .. }
            ]
        ));
        assert!(matches!(
            p.seen(id("M32", "4.13"), 47_000)[..],
            [Edge::Swapped { .. }]
        ));
    }
}
