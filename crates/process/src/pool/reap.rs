//! Reaping a pool's workers: [`reap`] waits for one that is exiting (and kills it if it
//! lingers), [`stop_and_reap`] asks a healthy one to stop first.

use std::time::{Duration, Instant};

use multiproc_core::ExitCause;
use multiproc_sys::pidfd::PidFd;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::Worker;
use crate::child::{ended, ExitWatch};
use crate::wire::{FrameWriter, Header, Kind};

/// Waits for a worker whose stream has closed and says how it ended. It is exiting; if it
/// has not exited within a second (it closed the socket but lives on), it is killed. Also for
/// a [`Launcher::ready`](super::Launcher::ready) that must reap a worker that died before it was ready.
///
/// # Safety
///
/// `pid` must be a child of this process that the caller owns and has not reaped, and that
/// nothing else waits for or signals: after a second, `reap` sends it `SIGKILL`, which for a
/// pid reaped elsewhere (and perhaps reused) would reach a process this program does not own.
pub unsafe fn reap(pid: Pid) -> ExitCause {
    // SAFETY: the caller's promise, passed on; the pidfd is opened for that unreaped child.
    unsafe { reap_with(pid, PidFd::open(pid).ok()) }
}

/// [`reap`] with a pidfd the caller already holds for `pid` (a pool's slot keeps one from the
/// worker's start): no second one is opened. It is polled before the first `waitpid`, since
/// a worker reaped here has usually just been told to stop and is still exiting.
///
/// # Safety
///
/// As for [`reap`]; and `pidfd`, if any, names `pid` (opened while it was our unreaped child).
pub(super) unsafe fn reap_with(pid: Pid, pidfd: Option<PidFd>) -> ExitCause {
    let deadline = Instant::now() + Duration::from_secs(1);
    // Exiting takes from microseconds to a few milliseconds (a large inherited address space
    // to tear down): wake the moment it has ended.
    let polled_first = pidfd.is_some();
    let mut watch = ExitWatch::new(pidfd);
    if polled_first {
        // Readable once it has ended; an error or a signal only means `waitpid` decides.
        let _ = watch.pause(Some(deadline - Instant::now()));
    }
    loop {
        let status = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => status,
            // Already reaped (ECHILD): nothing more to learn.
            Err(_) => return ExitCause::Code(-1),
        };
        if let Some(cause) = ended(status) {
            return cause;
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            return waitpid(pid, None)
                .ok()
                .and_then(ended)
                .unwrap_or(ExitCause::Signal(Signal::SIGKILL as i32));
        }
        // An error here (EINTR is retried inside) can only come from poll itself; the
        // deadline still bounds the loop.
        if watch.pause(Some(deadline - Instant::now())).is_err() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Asks a healthy worker to stop (or kills it, after `terminate`), then reaps it (with
/// `pidfd`, its slot's, if it has one). `worker` came from the pool's
/// [`Launcher`](super::Launcher) (so it is our child, handed over) and is no longer listed in
/// a slot, so nothing else signals or reaps it.
pub(super) fn stop_and_reap(worker: Worker, kill_it: bool, pidfd: Option<PidFd>) {
    if kill_it {
        let _ = kill(worker.pid, Signal::SIGKILL);
    } else {
        let bye = Header {
            kind: Kind::Shutdown,
            id: 0,
            call: 0,
        };
        let mut writer = FrameWriter::new(worker.stream);
        if writer
            .send(bye, &[], &[])
            .and_then(|()| writer.flush())
            .is_err()
        {
            let _ = kill(worker.pid, Signal::SIGKILL);
        }
        drop(writer);
        // SAFETY: see this function's comment: our child, reaped only here; `pidfd` is its
        // slot's, opened while it was listed (unreaped).
        unsafe { reap_with(worker.pid, pidfd) };
        return;
    }
    drop(worker.stream);
    // SAFETY: as above.
    unsafe { reap_with(worker.pid, pidfd) };
}
