//! Listening to a node: asks for its live listen stream, keeps it alive
//! (renewing before the lease runs out, asking again after a reconnect),
//! and hands each frame's PCM to a sink; measures the latency from capture
//! to this controller. The `listen` subcommand and the benchmark use it.

use std::io::Write;
use std::time::{Duration, Instant};

use rakkr_protocol::listen::LISTEN_LEASE_MS;
use rakkr_protocol::{CommandBody, ListenRequest, Outcome, Reply};
use tokio::sync::broadcast::error::RecvError;

use crate::{ControllerEvent, ControllerHandle};

/// What a listen session got.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    pub frames: u64,
    pub samples: u64,
    /// Frames missing from `seq` (dropped on the way).
    pub missing: u64,
    /// Capture-to-controller latency of every frame's first sample, ms.
    pub latencies_ms: Vec<u64>,
}

impl Heard {
    /// The `q` quantile (0..=1) of the latencies, ms.
    pub fn latency(&self, q: f64) -> Option<u64> {
        let mut l = self.latencies_ms.clone();
        l.sort_unstable();
        let i = ((l.len().checked_sub(1)?) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        l.get(i).copied()
    }
}

async fn ask(h: &ControllerHandle, node: &str, req: &ListenRequest) -> anyhow::Result<()> {
    let r = h
        .command(
            node,
            CommandBody::Listen(req.clone()),
            Duration::from_secs(10),
        )
        .await?;
    match r.outcome {
        Outcome::Done(Reply::Listening(_)) => Ok(()),
        other => anyhow::bail!("{node} refused to be listened to: {other:?}"),
    }
}

/// Listens to `node` for `length`, writing the PCM (mono S16LE) to `sink`.
/// The node must be connected (or connect within the first 30 s).
pub async fn listen(
    h: &ControllerHandle,
    node: &str,
    req: &ListenRequest,
    length: Duration,
    sink: &mut dyn Write,
) -> anyhow::Result<Heard> {
    let mut events = h.subscribe();
    let connected = |h: &ControllerHandle| h.node(node).is_some();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !connected(h) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {node} did not connect within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ask(h, node, req).await?;
    let renew_every = Duration::from_millis(u64::from(LISTEN_LEASE_MS) / 3);
    let mut renewed = Instant::now();
    let end = Instant::now() + length;
    let mut heard = Heard::default();
    let mut last_seq = None;
    while Instant::now() < end {
        if renewed.elapsed() >= renew_every {
            ask(h, node, req).await?;
            renewed = Instant::now();
        }
        let left = end
            .saturating_duration_since(Instant::now())
            .min(renew_every);
        let ev = match tokio::time::timeout(left, events.recv()).await {
            Err(_) => continue,
            Ok(Err(RecvError::Lagged(n))) => {
                tracing::warn!(n, "listen: events lagged");
                continue;
            }
            Ok(Err(RecvError::Closed)) => anyhow::bail!("the controller stopped"),
            Ok(Ok(ev)) => ev,
        };
        match ev {
            ControllerEvent::Listen {
                node: n,
                frame,
                received_at_ms,
            } if n == node => {
                if let Some(prev) = last_seq {
                    heard.missing += frame.seq.saturating_sub(prev + 1);
                }
                last_seq = Some(frame.seq);
                heard.frames += 1;
                heard.samples += frame.pcm.len() as u64 / 2;
                heard
                    .latencies_ms
                    .push(received_at_ms.saturating_sub(frame.captured_at_ms));
                sink.write_all(&frame.pcm)?;
            }
            // A new session of the node: its stream ended with the old one.
            ControllerEvent::Connected { node: n, .. } if n == node => {
                ask(h, node, req).await?;
                renewed = Instant::now();
                last_seq = None;
            }
            _ => {}
        }
    }
    let _ = h
        .command(node, CommandBody::StopListen, Duration::from_secs(10))
        .await;
    sink.flush()?;
    Ok(heard)
}

/// A 44-byte WAV header for mono 16-bit PCM of `samples` samples.
pub fn wav_header(rate: u32, samples: u64) -> [u8; 44] {
    let data = u32::try_from(samples * 2).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_of_one_second_at_16k() {
        let h = wav_header(16_000, 16_000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 36 + 32_000);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 32_000);
    }

    #[test]
    fn latency_quantiles() {
        let h = Heard {
            latencies_ms: (1..=100).collect(),
            ..Default::default()
        };
        assert_eq!(h.latency(0.5), Some(51));
        assert_eq!(h.latency(0.99), Some(99));
        assert_eq!(Heard::default().latency(0.5), None);
    }
}
