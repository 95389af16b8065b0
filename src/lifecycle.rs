//! The instance's lifecycle, `starting → ready → draining → stopping`, which readiness reports
//! and the listeners and streams follow, and the signals that move it. `instance` runs the
//! sequence.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

/// Where the instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Listeners are being bound; readiness fails.
    Starting = 0,
    /// Serving; readiness succeeds unless disabled by an operator.
    Ready = 1,
    /// A stop signal arrived: readiness fails, requests are still served, and responses ask
    /// clients to close their connection, so traffic moves to other instances.
    Draining = 2,
    /// Listeners are closed; in-flight requests finish and streams end.
    Stopping = 3,
}

/// Shared lifecycle state. Cheap to read on every request.
#[derive(Debug, Default)]
pub struct Lifecycle {
    phase: AtomicU8,
    disabled: AtomicBool,
    failed: AtomicBool,
    cut: AtomicBool,
    stopping: CancellationToken,
}

impl Lifecycle {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Stopping,
        }
    }

    /// Whether load balancers should send traffic here.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready && !self.disabled.load(Ordering::Acquire) && !self.has_failed()
    }

    /// Whether a listener failed: the instance is stopping and never ready again.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The shutdown timeout ran out: the requests still running are cut by the server, not
    /// abandoned by their clients.
    pub fn set_cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    /// Whether [`Lifecycle::set_cut`] was called.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// A listener failed: readiness fails from now on.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Whether connections should be closed after the current response.
    pub fn is_leaving(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Takes the instance out of rotation, or puts it back, without stopping it.
    pub fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::Release);
    }

    /// Both listeners are bound: start answering readiness with 200.
    pub fn set_ready(&self) {
        // Only from Starting: a signal that arrived during start-up wins.
        let _ = self.phase.compare_exchange(
            Phase::Starting as u8,
            Phase::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A stop signal arrived: fail readiness, keep serving.
    pub fn start_draining(&self) {
        self.phase
            .fetch_max(Phase::Draining as u8, Ordering::AcqRel);
    }

    /// The drain delay is over: listeners stop accepting and streams end.
    pub fn start_stopping(&self) {
        self.phase
            .fetch_max(Phase::Stopping as u8, Ordering::AcqRel);
        self.stopping.cancel();
    }

    /// A token cancelled when [`Lifecycle::start_stopping`] is called.
    pub fn stopping_token(&self) -> CancellationToken {
        self.stopping.clone()
    }
}

/// SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C). Installed once, at start, so a signal
/// that arrives early is not lost and the process never falls back to the default action
/// (which, as PID 1 in a container, would be to ignore SIGTERM until SIGKILL). SIGHUP, SIGUSR1
/// and SIGUSR2, whose default action is to terminate, are caught too, logged and ignored: an
/// operator's stray `kill -HUP` must not cut the requests in flight.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    ignored: [(i32, tokio::signal::unix::Signal); 3],
}

impl StopSignals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                ignored: [
                    (libc::SIGHUP, signal(SignalKind::hangup())?),
                    (libc::SIGUSR1, signal(SignalKind::user_defined1())?),
                    (libc::SIGUSR2, signal(SignalKind::user_defined2())?),
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next stop signal and returns its number.
    pub async fn recv(&mut self) -> i32 {
        #[cfg(unix)]
        loop {
            let [(hup, h), (usr1, u1), (usr2, u2)] = &mut self.ignored;
            let ignored = tokio::select! {
                _ = self.term.recv() => return libc::SIGTERM,
                _ = self.int.recv() => return libc::SIGINT,
                _ = h.recv() => *hup,
                _ = u1.recv() => *usr1,
                _ = u2.recv() => *usr2,
            };
            tracing::info!(
                signal = ignored,
                "signal ignored: only SIGTERM and SIGINT stop the server"
            );
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_phases_and_the_operator_switch() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_ready(), "not ready while starting");
        lifecycle.set_ready();
        assert!(lifecycle.is_ready());
        lifecycle.set_disabled(true);
        assert!(!lifecycle.is_ready(), "disabled by an operator");
        lifecycle.set_disabled(false);
        lifecycle.start_draining();
        assert!(!lifecycle.is_ready() && lifecycle.is_leaving());
        lifecycle.set_ready();
        assert_eq!(
            lifecycle.phase(),
            Phase::Draining,
            "never back to ready once draining"
        );
        lifecycle.start_stopping();
        assert_eq!(lifecycle.phase(), Phase::Stopping);
    }

    #[test]
    fn a_failed_listener_makes_the_instance_unready_for_good() {
        let lifecycle = Lifecycle::default();
        lifecycle.set_ready();
        lifecycle.set_failed();
        assert!(!lifecycle.is_ready() && lifecycle.has_failed());
    }
}
