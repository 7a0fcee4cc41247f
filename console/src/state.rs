//! What is known of one console: the facts its answers carried, folded
//! together. Applying an answer says what it changed (a name), so the
//! agent can record renames; the aliases of the card's channels come out
//! of it with how each was found.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Family, Identity, Update};
use crate::routing::{How, Route, WingRouting, X32Routing};

/// A name that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub channel: u16,
    /// `None`: the first time the name was heard.
    pub from: Option<String>,
    pub to: String,
}

/// A card channel as the console names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    /// 1-based card (device) channel.
    pub card_channel: u16,
    /// The console channel it carries, if any.
    pub console_channel: Option<u16>,
    /// That channel's name on the console (`None`: not heard yet, or an
    /// empty name, or no channel).
    pub name: Option<String>,
    pub routing: How,
}

#[derive(Debug, Clone, Default)]
pub struct Console {
    pub identity: Option<Identity>,
    names: BTreeMap<u16, String>,
    x32: X32Routing,
    wing: WingRouting,
}

impl Console {
    /// Folds one answer in; a channel name that differs from the one
    /// known is returned.
    pub fn apply(&mut self, update: Update) -> Option<Renamed> {
        match update {
            Update::Identity(id) => self.identity = Some(id),
            Update::Name { channel, name } => {
                let from = self.names.get(&channel).cloned();
                if from.as_deref() == Some(name.as_str()) {
                    return None;
                }
                self.names.insert(channel, name.clone());
                return Some(Renamed {
                    channel,
                    from,
                    to: name,
                });
            }
            Update::X32ChannelSource { channel, source } => {
                self.x32.sources.insert(channel, source);
            }
            Update::X32InputBlock { block, code } => {
                self.x32.inputs[usize::from(block)] = Some(code)
            }
            Update::X32CardBlock { block, code } => self.x32.card[usize::from(block)] = Some(code),
            Update::WingChannelGroup { channel, group } => {
                self.wing.channel_group.insert(channel, group);
            }
            Update::WingChannelInput { channel, input } => {
                self.wing.channel_input.insert(channel, input);
            }
            Update::WingUsbGroup { output, group } => {
                self.wing.usb_group.insert(output, group);
            }
            Update::WingUsbInput { output, input } => {
                self.wing.usb_input.insert(output, input);
            }
        }
        None
    }

    /// Forgets names and routing (another console answers now).
    pub fn forget(&mut self) {
        *self = Self {
            identity: self.identity.take(),
            ..Self::default()
        };
    }

    /// Console channel `channel`'s name, if heard and not empty.
    pub fn name(&self, channel: u16) -> Option<&str> {
        self.names
            .get(&channel)
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
    }

    /// How many names were heard.
    pub fn names_known(&self) -> usize {
        self.names.len()
    }

    /// Card channel `card`'s console channel: the override first, then the
    /// console's routing.
    pub fn route(&self, card: u16, overrides: &BTreeMap<u16, u16>) -> Route {
        if let Some(&console) = overrides.get(&card) {
            return Route {
                console: Some(console),
                how: How::Override,
            };
        }
        match self.identity.as_ref().map(|i| i.family) {
            Some(Family::X32) => self.x32.route(card),
            Some(Family::Wing) => self.wing.route(card),
            // X AIR (routing not read) and an unknown console: N is N.
            _ => Route {
                console: Some(card),
                how: How::Assumed,
            },
        }
    }

    /// The names of card channels `1..=channels`.
    pub fn aliases(&self, channels: u16, overrides: &BTreeMap<u16, u16>) -> Vec<Alias> {
        (1..=channels)
            .map(|card| {
                let r = self.route(card, overrides);
                Alias {
                    card_channel: card,
                    console_channel: r.console,
                    name: r.console.and_then(|c| self.name(c)).map(str::to_owned),
                    routing: r.how,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_heard_again_unchanged_is_no_rename() {
        let mut c = Console::default();
        let name = |n: &str| Update::Name {
            channel: 2,
            name: n.into(),
        };
        assert_eq!(c.apply(name("Kick")).unwrap().from, None);
        assert_eq!(c.apply(name("Kick")), None);
        let r = c.apply(name("Snare")).unwrap();
        assert_eq!((r.from.as_deref(), r.to.as_str()), (Some("Kick"), "Snare"));
        let a = c.aliases(3, &BTreeMap::new());
        assert_eq!(a[1].name.as_deref(), Some("Snare"));
        assert_eq!(a[0].name, None);
        let over = BTreeMap::from([(1, 2)]);
        assert_eq!(c.aliases(1, &over)[0].name.as_deref(), Some("Snare"));
        assert_eq!(c.aliases(1, &over)[0].routing, How::Override);
    }
}
