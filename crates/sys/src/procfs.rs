//! What `/proc` says about processes and memory: the one parser of `/proc/<pid>/stat`, and
//! the `Name:   1234 kB` files (`/proc/meminfo`, `/proc/<pid>/status`,
//! `/proc/<pid>/smaps_rollup`).
//!
//! [`stat`] reads into stack buffers only, so it may run in the child of a fork of a
//! multithreaded process (the robust locks check their holder's liveness there); the memory
//! counters allocate.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// The fields of `/proc/<pid>/stat` that multiproc reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3, the state: `R` running, `S` sleeping (in an interruptible wait, such as a
    /// futex), `D` uninterruptible, `Z` zombie (ended, not reaped), `X`/`x` dead, ...
    pub state: u8,
    /// Field 4, the parent's pid.
    pub ppid: u32,
    /// Field 10, the minor page faults of the whole process so far (for a thread's line,
    /// that thread's): pages it touched that needed no disk read — a fresh page faulted in,
    /// or a page of memory it had mapped without touching yet.
    pub minor_faults: u64,
    /// Field 22, the start time in clock ticks since boot: with the pid, it names a process
    /// uniquely (a recycled pid has another start time).
    pub start_time: u64,
}

impl Stat {
    /// Whether the process has ended and is not yet reaped, or is being torn down (`Z`, `X`,
    /// `x`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`. `None` if the line is malformed.
pub fn parse_stat(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line[close + 1..]
        .split(|&b| b == b' ' || b == b'\n')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let ppid = u32::try_from(number(fields.next()?)?).ok()?;
    let minor_faults = number(fields.nth(5)?)?; // fields 5..=9 skipped: field 10 is next
    let start_time = number(fields.nth(11)?)?; // fields 11..=21 skipped: field 22 is next
    Some(Stat {
        state,
        ppid,
        minor_faults,
        start_time,
    })
}

/// The leading decimal digits of `field` (at least one).
fn number(field: &[u8]) -> Option<u64> {
    let digits = field.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    field[..digits].iter().try_fold(0u64, |v, &b| {
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Reads and parses `/proc/<pid>/stat` (a thread id works too: `/proc/<tid>/stat` is that
/// thread's line). Reads into stack buffers only: safe in a forked child of a multithreaded
/// process. `ENOENT` once the process is reaped (or never existed), `EINVAL` for a line that
/// does not parse.
pub fn stat(pid: u32) -> Result<Stat, Errno> {
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    let mut digits = [0u8; 10];
    let (mut d, mut v) = (0, pid);
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[n] = digits[d];
        n += 1;
    }
    for &b in b"/stat" {
        path[n] = b;
        n += 1;
    }
    let fd = open(
        &path[..n],
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        match nix::unistd::read(fd.as_fd().as_raw_fd(), &mut buf[len..]) {
            Ok(0) => break,
            Ok(k) => {
                len += k;
                if len == buf.len() {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    parse_stat(&buf[..len]).ok_or(Errno::EINVAL)
}

/// The pids of every process visible in `/proc` right now (processes, not threads).
pub fn pids() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The value of a `Name:   1234 kB` line of a `/proc` file, in bytes.
pub fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

fn missing(file: &str, field: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{file} has no `{field}` line"),
    )
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn meminfo() -> io::Result<(u64, u64)> {
    let file = "/proc/meminfo";
    let text = fs::read_to_string(file)?;
    let total = kb_field(&text, "MemTotal").ok_or_else(|| missing(file, "MemTotal"))?;
    let available = kb_field(&text, "MemAvailable").ok_or_else(|| missing(file, "MemAvailable"))?;
    Ok((total, available))
}

/// `Pss` of `/proc/<pid>/smaps_rollup`, in bytes; 0 for a zombie (or a kernel thread), whose
/// file is empty.
pub fn pss(pid: u32) -> io::Result<u64> {
    let file = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&file)?;
    if text.is_empty() {
        return Ok(0);
    }
    kb_field(&text, "Pss").ok_or_else(|| missing(&file, "Pss"))
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status` (`VmRSS`, `RssShmem`, ...), in bytes;
/// `None` if the file has no such line.
pub fn status_field(pid: u32, name: &str) -> io::Result<Option<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(kb_field(&text, name))
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes; 0 for a zombie, which has no such line.
pub fn vm_rss(pid: u32) -> io::Result<u64> {
    Ok(status_field(pid, "VmRSS")?.unwrap_or(0))
}

/// The resident memory of process `pid`, in bytes: the second field of `/proc/<pid>/statm`
/// (pages) times the page size — the cheapest place the kernel gives it (several times
/// cheaper than `/proc/<pid>/status`, for a check made after every task).
pub fn resident_bytes(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed statm"))?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    Ok(pages * page)
}

/// Whether a failed read of `/proc/<pid>/...` means that the process is gone (or was never
/// ours to read), rather than a real error.
pub fn vanished(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = b"123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                ppid: 1,
                minor_faults: 7,
                start_time: 424_242
            })
        );
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (x) S").is_none());
    }

    #[test]
    fn this_process_and_its_threads_read_back() {
        let me = stat(std::process::id()).unwrap();
        assert!(matches!(me.state, b'R' | b'S'));
        assert!(me.start_time > 0);
        // Touching a fresh page is a minor fault.
        let page = vec![1u8; 1 << 20];
        std::hint::black_box(&page);
        assert!(stat(std::process::id()).unwrap().minor_faults > me.minor_faults);
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
        assert!(!me.is_dead());
        let tid = crate::thread::gettid() as u32;
        assert_eq!(stat(tid).unwrap().state, b'R'); // this thread, reading
        assert!(pids().unwrap().contains(&std::process::id()));
        assert_eq!(stat(u32::MAX - 1), Err(Errno::ENOENT));
    }

    #[test]
    fn kb_fields_parse_exact_names() {
        let text = "Rss:   10 kB\nPss_Anon:  3 kB\nPss:   7 kB\n";
        assert_eq!(kb_field(text, "Pss"), Some(7 * 1024));
        assert_eq!(kb_field(text, "Rss"), Some(10 * 1024));
        assert_eq!(kb_field(text, "Swap"), None);
        let (total, available) = meminfo().unwrap();
        assert!(total >= available && available > 0);
        assert!(pss(std::process::id()).unwrap() > 0);
        assert!(vm_rss(std::process::id()).unwrap() > 0);
        assert!(vanished(&pss(u32::MAX - 1).unwrap_err()));
    }
}
