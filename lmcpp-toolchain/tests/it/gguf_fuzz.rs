//! Property-based fuzzing of the GGUF reader (proptest, bounded so it runs in every test
//! run): valid files damaged in structured ways, and arbitrary bytes behind a valid magic,
//! always give a value or a typed error, never a panic, and never a large allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lmcpp_toolchain::gguf::read_gguf_bytes;
use proptest::prelude::*;
use proptest::sample::Index;

/// Counts, per thread, the largest single allocation requested, so a test can bound what
/// a hostile length or count field makes the reader allocate. Per thread because tests of
/// this binary run in parallel.
struct PeakTracking;

thread_local! {
    // The initializer is `const`: clippy 1.96 says otherwise for targets whose
    // thread-locals go through the OS's keys (x86_64-pc-windows-gnu), as it reads the
    // macro's expansion there.
    #[allow(clippy::missing_const_for_thread_local)]
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; we only observe sizes.
unsafe impl GlobalAlloc for PeakTracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakTracking = PeakTracking;

/// Reads `bytes` and returns the largest single allocation made while doing so.
fn read_and_measure(bytes: &[u8]) -> usize {
    LARGEST.with(|c| c.set(0));
    if let Ok(file) = read_gguf_bytes(bytes) {
        // Whatever parses is self-consistent.
        for t in &file.tensors {
            assert!(file.tensor_range(t).end <= file.file_size);
        }
        let _ = file.summary();
    }
    LARGEST.with(Cell::get)
}

/// No input of `len` bytes may make the reader allocate more than this at once: anything
/// larger would have come from a length or count field that the remaining bytes cannot
/// back.
fn allocation_bound(len: usize) -> usize {
    64 * 1024 + 16 * len
}

/// Values that break naive length arithmetic.
const INTERESTING: [u64; 9] = [
    0,
    1,
    31,
    32,
    255,
    1 << 31,
    u32::MAX as u64,
    i64::MAX as u64,
    u64::MAX,
];

#[derive(Debug, Clone)]
enum Damage {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Interesting(Index, usize),
    Truncate(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Damage::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Damage::SetByte(i, v)),
        (any::<Index>(), 0..INTERESTING.len()).prop_map(|(i, k)| Damage::Interesting(i, k)),
        any::<Index>().prop_map(Damage::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    match d {
        Damage::FlipBit(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << b;
        }
        Damage::SetByte(i, v) => {
            let at = i.index(bytes.len());
            bytes[at] = *v;
        }
        Damage::Interesting(i, k) => {
            let at = i.index(bytes.len());
            let end = (at + 8).min(bytes.len());
            bytes[at..end].copy_from_slice(&INTERESTING[*k].to_le_bytes()[..end - at]);
        }
        Damage::Truncate(i) => {
            let at = i.index(bytes.len()).max(1);
            bytes.truncate(at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A valid file (every value type, several tensor types) damaged in 1 to 6 places.
    #[test]
    fn damaged_valid_files_are_values_or_typed_errors(edits in prop::collection::vec(damage(), 1..6)) {
        let mut bytes = super::gguf::sample_bytes();
        for d in &edits {
            apply(&mut bytes, d);
        }
        let peak = read_and_measure(&bytes);
        prop_assert!(
            peak <= allocation_bound(bytes.len()),
            "{peak} bytes allocated at once for a {}-byte input",
            bytes.len()
        );
    }

    /// Arbitrary bytes after the magic and a version, including lying counts.
    #[test]
    fn arbitrary_bodies_never_panic_or_overallocate(
        version in prop_oneof![Just(2u32), Just(3u32), any::<u32>()],
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(body);
        let peak = read_and_measure(&bytes);
        prop_assert!(
            peak <= allocation_bound(bytes.len()),
            "{peak} bytes allocated at once for a {}-byte input",
            bytes.len()
        );
    }
}
