//! Huge pages for shared memory: which the system offers ([`policy`]), which a shared file
//! of a given size gets ([`PagePolicy::choose`]), and the advice a mapping of it needs
//! ([`advise`]).
//!
//! A fresh mapping of 4 KiB-paged shared memory costs a page fault per 4 KiB the first time
//! each page is touched; a 2 MiB page costs one fault for 512 of them. Linux offers two
//! kinds for shared memory:
//!
//! - **hugetlb** pages, reserved by the administrator (`/proc/sys/vm/nr_hugepages`): a memfd
//!   created with `MFD_HUGETLB` lives in them. Its size is a whole number of huge pages, and
//!   its pages are reserved when it is first mapped — so [`memfd::create_shared`] maps it once
//!   at creation, and falls back to ordinary pages when the reservation fails.
//! - **transparent** huge pages for shmem (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`):
//!   with `always` (or `force`) the kernel uses them on its own, with `advise` or
//!   `within_size` a mapping asks for them with `madvise(MADV_HUGEPAGE)` ([`advise`]); with
//!   `never` (or `deny`) there are none.
//!
//! Only files of at least [`HUGE_MIN`] bytes get huge pages (a hugetlb file is rounded up to
//! a whole huge page: at most a third wasted at that size). Everything falls back silently:
//! where neither kind is available, shared memory is what it always was.
//!
//! [`memfd::create_shared`]: crate::memfd::create_shared

use std::ffi::c_void;
use std::fmt;
use std::ptr::NonNull;

/// Shared files smaller than this get ordinary pages.
pub const HUGE_MIN: usize = 4 << 20;

/// The ordinary page size of the architectures multiproc runs on.
pub const BASE_PAGE: usize = 4096;

/// Which pages back a shared file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// Ordinary (4 KiB) pages.
    Base,
    /// Shmem with transparent huge pages: the system uses them by default (`always`) or the
    /// mapping asked for them (`advise`, `within_size`). The kernel backs each aligned 2 MiB
    /// with a huge page when it has one free, with ordinary pages otherwise.
    Transparent,
    /// Reserved hugetlb pages (`MFD_HUGETLB`): every page is a huge page, reserved when the
    /// file was created.
    HugeTlb,
}

impl PageKind {
    /// A short name for reports: `4 KiB`, `transparent huge`, `hugetlb`.
    pub fn name(self) -> &'static str {
        match self {
            PageKind::Base => "4 KiB",
            PageKind::Transparent => "transparent huge",
            PageKind::HugeTlb => "hugetlb",
        }
    }
}

impl fmt::Display for PageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The setting of `/sys/kernel/mm/transparent_hugepage/shmem_enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShmemThp {
    /// `always`: every shmem mapping gets huge pages where they fit.
    Always,
    /// `within_size`: huge pages where they fit inside the file's size, and where advised.
    WithinSize,
    /// `advise`: huge pages only where a mapping asks (`MADV_HUGEPAGE`).
    Advise,
    /// `never`: none.
    Never,
    /// `deny`: none, even when asked (a testing setting).
    Deny,
    /// `force`: every shmem file, even internal ones (a testing setting).
    Force,
    /// The file is absent or unreadable (no THP in this kernel): none.
    Unavailable,
}

impl ShmemThp {
    /// Parses the file's contents (`always within_size advise [never] deny force`: the
    /// bracketed word is the setting).
    pub fn parse(text: &str) -> ShmemThp {
        let Some(word) = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        else {
            return ShmemThp::Unavailable;
        };
        match word {
            "always" => ShmemThp::Always,
            "within_size" => ShmemThp::WithinSize,
            "advise" => ShmemThp::Advise,
            "never" => ShmemThp::Never,
            "deny" => ShmemThp::Deny,
            "force" => ShmemThp::Force,
            _ => ShmemThp::Unavailable,
        }
    }

    /// Whether shmem mappings get transparent huge pages (when asked, where that is needed).
    pub fn offers(self) -> bool {
        matches!(
            self,
            ShmemThp::Always | ShmemThp::WithinSize | ShmemThp::Advise | ShmemThp::Force
        )
    }

    /// The file's word for the setting.
    pub fn name(self) -> &'static str {
        match self {
            ShmemThp::Always => "always",
            ShmemThp::WithinSize => "within_size",
            ShmemThp::Advise => "advise",
            ShmemThp::Never => "never",
            ShmemThp::Deny => "deny",
            ShmemThp::Force => "force",
            ShmemThp::Unavailable => "unavailable",
        }
    }
}

/// What the system offers shared memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePolicy {
    /// The default hugetlb page size (`Hugepagesize` in `/proc/meminfo`; 0 if none).
    pub hugetlb_page: usize,
    /// Hugetlb pages of that size free and not reserved by anyone
    /// (`HugePages_Free - HugePages_Rsvd`).
    pub hugetlb_available: u64,
    /// The shmem transparent huge page setting.
    pub shmem_thp: ShmemThp,
}

/// The shmem THP setting's file.
pub const SHMEM_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// Reads what the system offers now (`/proc/meminfo` and [`SHMEM_ENABLED`]); whatever cannot
/// be read counts as not offered.
pub fn policy() -> PagePolicy {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let hugetlb_page = usize::try_from(field("Hugepagesize").saturating_mul(1024)).unwrap_or(0);
    let hugetlb_available = field("HugePages_Free").saturating_sub(field("HugePages_Rsvd"));
    let shmem_thp = std::fs::read_to_string(SHMEM_ENABLED)
        .map_or(ShmemThp::Unavailable, |t| ShmemThp::parse(&t));
    PagePolicy {
        hugetlb_page,
        hugetlb_available,
        shmem_thp,
    }
}

impl PagePolicy {
    /// The pages a shared file of `len` bytes gets: hugetlb when enough reserved pages are
    /// free for it, else transparent huge pages when shmem offers them, else ordinary pages
    /// (always for files under [`HUGE_MIN`]).
    pub fn choose(&self, len: usize) -> PageKind {
        if len < HUGE_MIN {
            return PageKind::Base;
        }
        if self.hugetlb_page > BASE_PAGE {
            let needed = len.div_ceil(self.hugetlb_page) as u64;
            if needed <= self.hugetlb_available {
                return PageKind::HugeTlb;
            }
        }
        self.transparent(len)
    }

    /// The pages a shmem (not hugetlb) file of `len` bytes gets.
    pub fn transparent(&self, len: usize) -> PageKind {
        if len >= HUGE_MIN && self.shmem_thp.offers() {
            PageKind::Transparent
        } else {
            PageKind::Base
        }
    }
}

impl fmt::Display for PagePolicy {
    /// `hugetlb: 64 free 2 MiB pages; shmem THP: never` — for a report's header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hugetlb: {} free {} MiB pages; shmem THP: {}",
            self.hugetlb_available,
            self.hugetlb_page >> 20,
            self.shmem_thp.name()
        )
    }
}

/// Asks for transparent huge pages on a mapping of a [`PageKind::Transparent`] file
/// (`madvise(MADV_HUGEPAGE)`); does nothing for the other kinds. Returns whether the advice
/// was given and taken (`false` changes nothing but the pages).
///
/// # Safety
///
/// `addr..addr + len` must be (part of) a mapping this process made and still has.
/// `MADV_HUGEPAGE` changes only how the kernel backs it, never its contents.
pub unsafe fn advise(addr: NonNull<c_void>, len: usize, kind: PageKind) -> bool {
    if kind != PageKind::Transparent {
        return false;
    }
    // SAFETY: the caller promises the range is our mapping; the advice never changes what it
    // holds, so no reference into it is invalidated.
    unsafe { libc::madvise(addr.as_ptr(), len, libc::MADV_HUGEPAGE) == 0 }
}

/// A system setting changed for as long as the guard lives, and restored when it drops: for
/// tests and benchmarks of the huge-page paths on a machine whose administrator (root) runs
/// them. Another process that changes the same setting meanwhile is overwritten on drop.
#[derive(Debug)]
#[must_use = "the setting is restored when the guard drops"]
pub struct TempSetting {
    path: &'static str,
    restore: String,
}

/// The file of the default hugetlb pool's size.
pub const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

impl TempSetting {
    /// Adds `pages` default-size pages to the hugetlb pool (`/proc/sys/vm/nr_hugepages`).
    /// Errors: not permitted (not root, read-only `/proc/sys`), or the kernel found fewer
    /// free pages than asked (then nothing is changed).
    pub fn hugetlb_pages(pages: u64) -> std::io::Result<TempSetting> {
        let before = std::fs::read_to_string(NR_HUGEPAGES)?;
        let want = before
            .trim()
            .parse::<u64>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            .saturating_add(pages);
        let guard = TempSetting::set(NR_HUGEPAGES, want.to_string(), before.trim().to_owned())?;
        let now = std::fs::read_to_string(NR_HUGEPAGES)?;
        if now.trim().parse::<u64>().ok() != Some(want) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!(
                    "asked the kernel for {want} hugetlb pages, it found {}",
                    now.trim()
                ),
            ));
        }
        Ok(guard)
    }

    /// Sets the shmem transparent huge page policy ([`SHMEM_ENABLED`]). Errors: not
    /// permitted, no THP in this kernel, or a setting the file does not take
    /// ([`ShmemThp::Unavailable`]).
    pub fn shmem_thp(setting: ShmemThp) -> std::io::Result<TempSetting> {
        let before = std::fs::read_to_string(SHMEM_ENABLED)?;
        let old = ShmemThp::parse(&before);
        if old == ShmemThp::Unavailable || setting == ShmemThp::Unavailable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no shmem THP setting to change",
            ));
        }
        TempSetting::set(
            SHMEM_ENABLED,
            setting.name().to_owned(),
            old.name().to_owned(),
        )
    }

    fn set(path: &'static str, value: String, restore: String) -> std::io::Result<TempSetting> {
        let guard = TempSetting { path, restore };
        std::fs::write(path, value)?;
        Ok(guard)
    }
}

impl Drop for TempSetting {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, &self.restore);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_word_is_the_setting() {
        let all = ["always", "within_size", "advise", "never", "deny", "force"];
        for (i, word) in all.iter().enumerate() {
            let text: Vec<String> = all
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    if i == j {
                        format!("[{w}]")
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            assert_eq!(ShmemThp::parse(&text.join(" ")).name(), *word);
        }
        assert_eq!(ShmemThp::parse("always never"), ShmemThp::Unavailable);
        assert_eq!(ShmemThp::parse(""), ShmemThp::Unavailable);
    }

    #[test]
    fn small_files_and_missing_pages_get_base_pages() {
        let none = PagePolicy {
            hugetlb_page: 2 << 20,
            hugetlb_available: 0,
            shmem_thp: ShmemThp::Never,
        };
        assert_eq!(none.choose(1 << 30), PageKind::Base);
        let thp = PagePolicy {
            shmem_thp: ShmemThp::Advise,
            ..none
        };
        assert_eq!(thp.choose(HUGE_MIN - 1), PageKind::Base);
        assert_eq!(thp.choose(HUGE_MIN), PageKind::Transparent);
        let tlb = PagePolicy {
            hugetlb_available: 3,
            ..thp
        };
        assert_eq!(tlb.choose(6 << 20), PageKind::HugeTlb);
        // Not enough reserved pages for it: the next best.
        assert_eq!(tlb.choose((6 << 20) + 1), PageKind::Transparent);
        assert_eq!(tlb.transparent(6 << 20), PageKind::Transparent);
        let live = policy();
        assert!(!live.to_string().is_empty());
    }
}
