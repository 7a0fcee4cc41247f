//! Variables of today's Rakkr agent that have no `RAKKR_<SECTION>_<KEY>`
//! name of ours: what Rakkr's Ansible role writes into
//! `/etc/rakkr/recorder-agent.env` (its `recorder-agent.env.j2`). Each is
//! honoured under its meaning or named in the log once at start — never
//! silently ignored, so a node set up by that role says what it does with
//! every line of its env file.
//!
//! - `RAKKR_AGENT_CACHE_DIR` (where that agent keeps recordings before
//!   upload) sets `storage.recordings_path` unless ours is set.
//! - `RAKKR_CONTROLLER_TOKEN` (the node's bearer token) is an enrollment
//!   token (see `trust::enroll::token`): the bridge checks it against the
//!   Rakkr controller.
//! - `RAKKR_CAPTURE_BACKEND` = `alsa` is what we do anyway; anything else,
//!   `RAKKR_AGENT_HEALTH_LOG_FILE`, `RAKKR_ALLOW_INSECURE_CONTROLLER` and
//!   `RAKKR_METER_BACKEND` are not used, and the note says why.
//!
//! An `http(s)://` `RAKKR_CONTROLLER_URL` is handled with the URL (see
//! `resolve::parse_url`).

use toml::{Table, Value};

/// What becomes of a variable.
#[derive(Debug, Clone, Copy)]
enum Use {
    /// Sets this key (a string), unless the file or our variable does.
    Key(&'static str, &'static str),
    /// Not used, for this reason; `except` is a value that needs no note.
    Ignored {
        why: &'static str,
        except: Option<&'static str>,
    },
}

const LEGACY: &[(&str, Use)] = &[
    (
        "RAKKR_AGENT_CACHE_DIR",
        Use::Key("storage", "recordings_path"),
    ),
    (
        "RAKKR_AGENT_HEALTH_LOG_FILE",
        Use::Ignored {
            why: "health events go to the controller (kept in the outbox while it is away) and to the journal, not to a file",
            except: None,
        },
    ),
    (
        "RAKKR_ALLOW_INSECURE_CONTROLLER",
        Use::Ignored {
            why: "the link to the controller is always mutual TLS; there is no insecure mode",
            except: None,
        },
    ),
    (
        "RAKKR_CAPTURE_BACKEND",
        Use::Ignored {
            why: "this agent captures through ALSA only (capture.device names the ALSA device)",
            except: Some("alsa"),
        },
    ),
    (
        "RAKKR_METER_BACKEND",
        Use::Ignored {
            why: "meters are computed from the capture stream itself",
            except: None,
        },
    ),
];

/// What [`apply`] did: notes for the log, and the keys it set (with the
/// variable that set them, for `origins`).
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub(super) notes: Vec<String>,
    pub(super) keys: Vec<(String, String)>,
}

/// Sets the honoured variables' keys where `table` has none yet.
pub(super) fn apply(table: &mut Table, env: &dyn Fn(&str) -> Option<String>) -> Applied {
    let mut out = Applied::default();
    for (var, what) in LEGACY {
        let Some(value) = env(var) else { continue };
        match *what {
            Use::Key(section, key) => {
                let s = table
                    .entry(section.to_owned())
                    .or_insert_with(|| Value::Table(Table::new()));
                let Value::Table(s) = s else { continue };
                if s.contains_key(key) {
                    out.notes.push(format!(
                        "{var} (of the previous Rakkr agent) is not used: {section}.{key} is set"
                    ));
                } else {
                    s.insert(key.to_owned(), Value::String(value.clone()));
                    out.notes.push(format!(
                        "{var} (of the previous Rakkr agent) sets {section}.{key} = {value:?}"
                    ));
                    out.keys
                        .push((format!("{section}.{key}"), (*var).to_owned()));
                }
            }
            Use::Ignored { why, except } => {
                if except.is_some_and(|e| value.trim().eq_ignore_ascii_case(e)) {
                    continue;
                }
                out.notes.push(format!(
                    "{var}={value:?} (of the previous Rakkr agent) is not used: {why}"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let vars = vars.to_vec();
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn every_line_the_role_writes_is_honoured_or_named() {
        let env = env_of(&[
            ("RAKKR_AGENT_CACHE_DIR", "/var/lib/rakkr/agent/cache"),
            (
                "RAKKR_AGENT_HEALTH_LOG_FILE",
                "/var/lib/rakkr/agent/h.jsonl",
            ),
            ("RAKKR_ALLOW_INSECURE_CONTROLLER", "1"),
            ("RAKKR_CAPTURE_BACKEND", "alsa"),
            ("RAKKR_METER_BACKEND", "ffmpeg"),
        ]);
        let mut t = Table::new();
        let a = apply(&mut t, &env);
        assert_eq!(
            t["storage"]["recordings_path"].as_str(),
            Some("/var/lib/rakkr/agent/cache")
        );
        assert_eq!(
            a.keys,
            [(
                "storage.recordings_path".to_owned(),
                "RAKKR_AGENT_CACHE_DIR".to_owned()
            )]
        );
        let notes = a.notes.join("\n");
        for var in [
            "RAKKR_AGENT_CACHE_DIR",
            "RAKKR_AGENT_HEALTH_LOG_FILE",
            "RAKKR_ALLOW_INSECURE_CONTROLLER",
            "RAKKR_METER_BACKEND",
        ] {
            assert!(notes.contains(var), "{var} not named:\n{notes}");
        }
        assert!(!notes.contains("RAKKR_CAPTURE_BACKEND"), "alsa is ours");
        let other = env_of(&[("RAKKR_CAPTURE_BACKEND", "pulse")]);
        assert!(apply(&mut Table::new(), &other).notes[0].contains("ALSA only"));
    }

    #[test]
    fn our_own_setting_wins_over_the_old_name() {
        let env = env_of(&[("RAKKR_AGENT_CACHE_DIR", "/old")]);
        let mut t: Table = "[storage]\nrecordings_path = \"/mine\"".parse().unwrap();
        let a = apply(&mut t, &env);
        assert_eq!(t["storage"]["recordings_path"].as_str(), Some("/mine"));
        assert!(a.keys.is_empty() && a.notes[0].contains("is set"));
    }
}
