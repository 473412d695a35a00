//! [`Home`]: the process a pool or handle belongs to.

use crate::error::{Error, Result};

/// The process that created a pool or a process handle. A `fork` copies every value, so a
/// forked child can hold a copy of one (through a `static`, or a value moved into a forked
/// closure); that copy has none of its creator's threads or children, so it must refuse
/// every call with [`Error::ForeignProcess`] and do nothing when dropped. Every backend's
/// pools and handles keep a `Home` and ask it.
///
/// ```
/// let home = multiproc_core::Home::here("pool");
/// assert!(home.is_here());
/// assert!(home.check().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home {
    pid: u32,
    what: &'static str,
}

impl Home {
    /// This process, as the home of a `what` (`"pool"`, `"process handle"`), named in the
    /// error of a copy used elsewhere.
    pub fn here(what: &'static str) -> Home {
        Home {
            pid: multiproc_sys::process::current_pid(),
            what,
        }
    }

    /// The creator's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this is the creating process.
    pub fn is_here(&self) -> bool {
        multiproc_sys::process::current_pid() == self.pid
    }

    /// `Ok` in the creating process; [`Error::ForeignProcess`] in any other.
    pub fn check(&self) -> Result<()> {
        let current = multiproc_sys::process::current_pid();
        if current == self.pid {
            Ok(())
        } else {
            Err(Error::ForeignProcess {
                what: self.what,
                owner: self.pid,
                current,
            })
        }
    }
}
