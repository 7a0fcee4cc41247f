//! systemd integration through `$NOTIFY_SOCKET` (`Type=notify`): `READY=1`
//! once the daemon serves, `STATUS=` lines saying what it is doing (link,
//! take, device), `WATCHDOG=1` pings while the runtime *and* the recorder
//! thread answer, `STOPPING=1` on the way out. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.
//!
//! Runs on the daemon's runtime: a wedged runtime stops the pings, and a
//! wedged engine thread stops them too (its status request times out),
//! so systemd's watchdog restarts an agent that no longer records.
//!
//! See: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::engine::Handle;
use crate::node::{LinkStatus, Node};

/// How often the status line is refreshed without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How long the recorder may take to answer before a ping is skipped.
const RECORDER_ANSWER: Duration = Duration::from_secs(2);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Tells systemd the daemon is up (config, state and recorder loaded).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the daemon is stopping, and why.
pub fn stopping(why: &str) {
    let status = format!("stopping: {why}");
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// The one-line status: link, then what the recorder does.
pub fn status_line(link: &LinkStatus, rec: Option<&crate::engine::Status>) -> String {
    let link = match link {
        LinkStatus::Starting => "starting".to_owned(),
        LinkStatus::Connecting { attempt } => format!("connecting (attempt {attempt})"),
        LinkStatus::Connected { controller, .. } => format!("connected to {controller}"),
        LinkStatus::Disconnected { reason, .. } => format!("disconnected: {reason}"),
        LinkStatus::RenewalOnly { controller, .. } => {
            format!("certificate expired; renewing with {controller}")
        }
        LinkStatus::Stopping => "stopping".to_owned(),
    };
    let rec = match rec {
        None => "recorder not answering".to_owned(),
        Some(s) => match &s.take {
            Some(t) => format!(
                "recording take {} on {} channels at {} Hz",
                t.take_id, t.channels, t.sample_rate
            ),
            None if s.device_ok => format!("idle, device {}", s.device),
            None => match &s.error {
                Some(e) => format!("idle, no capture device: {e}"),
                None => "idle, waiting for a capture device".to_owned(),
            },
        },
    };
    format!("{link}; {rec}")
}

/// Pings the watchdog (when systemd set one) and keeps `STATUS=` current
/// until `cancel`.
pub async fn supervise(node: Arc<Node>, recorder: Handle, cancel: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    // NOTE: systemd recommends pinging at half the interval; a third leaves
    // room for a slow recorder answer.
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 3).min(STATUS_EVERY));
    let mut last = String::new();
    loop {
        let rec = tokio::time::timeout(RECORDER_ANSWER, recorder.status())
            .await
            .ok()
            .and_then(Result::ok);
        let line = status_line(&node.status.borrow(), rec.as_ref());
        let mut states = Vec::with_capacity(2);
        if watchdog.is_some() && rec.is_some() {
            states.push(NotifyState::Watchdog);
        }
        if line != last {
            states.push(NotifyState::Status(&line));
        }
        if !states.is_empty() {
            send(&states);
        }
        last = line;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_the_take_and_its_channels() {
        let link = LinkStatus::Connected {
            controller: "ctl:7443".into(),
            since: String::new(),
            protocol: 1,
        };
        let idle = crate::engine::Status {
            take: None,
            takes: Vec::new(),
            device: "hw:CARD=XUSB,DEV=0".into(),
            device_ok: true,
            error: None,
            frames: 0,
            lost: 0,
            rate: 0,
            listening: None,
            held: None,
        };
        assert_eq!(
            status_line(&link, Some(&idle)),
            "connected to ctl:7443; idle, device hw:CARD=XUSB,DEV=0"
        );
        let lost = crate::engine::Status {
            device_ok: false,
            error: Some("no such device".into()),
            ..idle
        };
        assert_eq!(
            status_line(&LinkStatus::Connecting { attempt: 3 }, Some(&lost)),
            "connecting (attempt 3); idle, no capture device: no such device"
        );
        assert_eq!(
            status_line(&LinkStatus::Starting, None),
            "starting; recorder not answering"
        );
    }
}
