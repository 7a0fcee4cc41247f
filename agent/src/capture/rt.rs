//! Real-time scheduling for cpal's capture thread.
//!
//! cpal's ALSA host spawns its worker thread while the stream is built, and
//! a new thread inherits its creator's scheduling policy and priority
//! (sched(7): "a child created by fork(2) / a thread created by clone(2)
//! inherits the scheduling policy"). So the stream is built on a short-lived
//! helper thread that first asks for SCHED_FIFO: the worker runs at that
//! priority, and no other agent thread ever does.
//!
//! Allowed by `LimitRTPRIO=` in the systemd unit (or CAP_SYS_NICE); when
//! refused, capture runs at normal priority and the caller is told why.
//!
//! See: https://man7.org/linux/man-pages/man7/sched.7.html

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// Runs `f` on a new thread with SCHED_FIFO `priority` (1–99); returns what
/// `f` returned and whether the priority was granted (`Err`: why not).
pub fn on_fifo_thread<T: Send + 'static>(
    priority: u8,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<(T, Result<(), String>)> {
    std::thread::Builder::new()
        .name("rakkr-capture-open".into())
        .spawn(move || {
            let granted = ThreadPriorityValue::try_from(priority)
                .map_err(|e| format!("priority {priority}: {e}"))
                .and_then(|p| {
                    set_thread_priority_and_policy(
                        thread_native_id(),
                        ThreadPriority::Crossplatform(p),
                        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
                    )
                    .map_err(|e| format!("SCHED_FIFO {priority}: {e:?}"))
                });
            (f(), granted)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the capture-open thread panicked"))
}
