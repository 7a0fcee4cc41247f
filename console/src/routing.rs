//! Which console channel each USB card channel carries.
//!
//! Card channel N is not always console channel N: the console's routing
//! decides what its USB card sends the computer. X32: the card's block of
//! 8 carries a source block (`/config/routing/CARD/…`), an input block
//! (`/config/routing/IN/…`) takes that source as inputs 8k+1…8k+8, and a
//! channel takes an input (`/ch/NN/config/source`). WING: a USB output
//! carries a channel's direct out (`grp` `CH`, `in` = the channel) or a
//! physical input (`grp`/`in`), which the channel whose `in/conn` names
//! the same input records.

use std::collections::BTreeMap;

use serde::Serialize;

/// How a card channel's console channel was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// From the console's routing, as read.
    Read,
    /// The routing is not (yet) known: card channel N taken as channel N.
    Assumed,
    /// From `console.routing` in the node's configuration.
    Override,
}

/// A card channel's console channel (`None`: it carries something that
/// is no input channel: a bus, an output, nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub console: Option<u16>,
    pub how: How,
}

/// A source block of 8 channels, as both X32 enums name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Local(u16),
    Aes50A(u16),
    Aes50B(u16),
    Card(u16),
    User(u16),
}

/// `/config/routing/IN/…` codes.
fn input_block(code: u16) -> Option<Block> {
    Some(match code {
        0..=3 => Block::Local(code),
        4..=9 => Block::Aes50A(code - 4),
        10..=15 => Block::Aes50B(code - 10),
        16..=19 => Block::Card(code - 16),
        20..=23 => Block::User(code - 20),
        _ => return None,
    })
}

/// `/config/routing/CARD/…` codes (outputs, P16, aux and user outs are
/// no input block).
fn card_block(code: u16) -> Option<Block> {
    match code {
        0..=19 => input_block(code),
        32..=35 => Some(Block::User(code - 32)),
        _ => None,
    }
}

/// What an X32 told of its routing.
#[derive(Debug, Clone, Default)]
pub struct X32Routing {
    pub inputs: [Option<u16>; 4],
    pub card: [Option<u16>; 4],
    /// Console channel → its source (1–32: input 1–32).
    pub sources: BTreeMap<u16, u16>,
}

impl X32Routing {
    pub fn route(&self, card: u16) -> Route {
        let assumed = Route {
            console: (1..=32).contains(&card).then_some(card),
            how: How::Assumed,
        };
        if !(1..=32).contains(&card) {
            return assumed;
        }
        let (b, j) = (usize::from((card - 1) / 8), (card - 1) % 8);
        let Some(code) = self.card[b] else {
            return assumed;
        };
        let read = |console| Route {
            console,
            how: How::Read,
        };
        let Some(source) = card_block(code) else {
            return read(None);
        };
        let Some(k) = (0..4).find(|&k| self.inputs[k].and_then(input_block) == Some(source)) else {
            return read(None);
        };
        let input = 8 * k as u16 + j + 1;
        if self.sources.is_empty() {
            return read(Some(input));
        }
        read(
            self.sources
                .iter()
                .find(|(_, s)| **s == input)
                .map(|(ch, _)| *ch),
        )
    }
}

/// What a WING told of its routing.
#[derive(Debug, Clone, Default)]
pub struct WingRouting {
    pub usb_group: BTreeMap<u16, String>,
    pub usb_input: BTreeMap<u16, u16>,
    pub channel_group: BTreeMap<u16, String>,
    pub channel_input: BTreeMap<u16, u16>,
}

impl WingRouting {
    pub fn route(&self, card: u16) -> Route {
        let (Some(group), Some(&input)) = (self.usb_group.get(&card), self.usb_input.get(&card))
        else {
            return Route {
                console: (1..=40).contains(&card).then_some(card),
                how: How::Assumed,
            };
        };
        let console = match group.as_str() {
            "CH" => (1..=40).contains(&input).then_some(input),
            "OFF" => None,
            _ => self
                .channel_group
                .iter()
                .find(|(ch, g)| *g == group && self.channel_input.get(ch) == Some(&input))
                .map(|(ch, _)| *ch),
        };
        Route {
            console,
            how: How::Read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x32_card_block_carrying_local_17_24_is_channels_17_to_24() {
        let mut r = X32Routing::default();
        assert_eq!(r.route(1).how, How::Assumed);
        // Defaults: inputs 1-32 from AN1-32; the card sends AN17-24 on 1-8.
        r.inputs = [Some(0), Some(1), Some(2), Some(3)];
        r.card = [Some(2), Some(1), Some(20), None];
        assert_eq!(r.route(1).console, Some(17));
        assert_eq!(r.route(8).console, Some(24));
        assert_eq!(r.route(9).console, Some(9));
        // OUT1-8: no input channel.
        assert_eq!(
            r.route(17),
            Route {
                console: None,
                how: How::Read
            }
        );
        assert_eq!(r.route(25).how, How::Assumed);
        // Channel 3 takes input 17: card channel 1 is channel 3.
        r.sources = (1..=32).map(|c| (c, if c == 3 { 17 } else { 0 })).collect();
        assert_eq!(r.route(1).console, Some(3));
        assert_eq!(r.route(2).console, None);
    }

    #[test]
    fn wing_direct_outs_and_physical_inputs() {
        let mut r = WingRouting::default();
        assert_eq!(r.route(5).console, Some(5));
        r.usb_group.insert(1, "CH".into());
        r.usb_input.insert(1, 12);
        r.usb_group.insert(2, "LCL".into());
        r.usb_input.insert(2, 3);
        r.channel_group.insert(7, "LCL".into());
        r.channel_input.insert(7, 3);
        r.usb_group.insert(3, "MAIN".into());
        r.usb_input.insert(3, 1);
        assert_eq!(r.route(1).console, Some(12));
        assert_eq!(r.route(2).console, Some(7));
        assert_eq!(
            r.route(3),
            Route {
                console: None,
                how: How::Read
            }
        );
    }
}
