//! Creating a 500 MB shared array touches no page: resident shared memory grows only by what
//! is written. (Its own binary, so no other test allocates meanwhile.)

use multiproc_shared_array::RawArray;

/// `RssShmem` of this process in KiB: resident pages of shared memory (memfd included).
fn rss_shmem_kib() -> u64 {
    status_kib("RssShmem:")
}

fn status_kib(field: &str) -> u64 {
    let field = field.trim_end_matches(':');
    multiproc_sys::procfs::status_field(std::process::id(), field)
        .unwrap()
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
        / 1024
}

#[test]
fn a_500_mb_array_costs_no_memory_until_written() {
    let (before, rss_before) = (rss_shmem_kib(), status_kib("VmRSS:"));
    let a = RawArray::<f64>::zeros(500_000_000 / 8).unwrap();
    let (after_create, rss_after) = (rss_shmem_kib(), status_kib("VmRSS:"));
    println!(
        "creating a 500 MB RawArray<f64>: RssShmem {before} -> {after_create} KiB, \
         VmRSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        after_create - before < 64,
        "creating touched {} KiB",
        after_create - before
    );
    if a.pages() != multiproc_sys::pages::PageKind::Base {
        // Huge pages (the system reserved or offers them): a touch makes 2 MiB resident, and
        // hugetlb pages are not counted in RssShmem at all.
        println!("{} pages: the per-page count does not apply", a.pages());
        return;
    }
    // Writing one element in each of 100 pages makes exactly those resident.
    for k in 0..100 {
        a.store(k * 4096 / 8 * 1000, 1.0).unwrap();
    }
    let after_write = rss_shmem_kib();
    let grown = after_write - after_create;
    assert!(
        (400..600).contains(&grown),
        "100 touched pages grew RssShmem by {grown} KiB"
    );
    drop(a);
    assert!(
        rss_shmem_kib() <= after_create + 64,
        "pages stayed after drop"
    );
}
