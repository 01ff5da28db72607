//! Feeds arbitrary bytes to `ember_store::package::inspect`, which parses untrusted zips.
//! It must never panic, hang or allocate without bound, and whatever it accepts must
//! respect the limits it was given.
#![no_main]

use ember_store::package::{Limits, inspect};
use libfuzzer_sys::fuzz_target;

/// Small caps keep each run fast; bombs are still caught by the counting.
const LIMITS: Limits = Limits {
    max_unzipped_bytes: 1 << 20,
    max_entries: 256,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = inspect(data, &LIMITS) {
        assert!(info.unzipped_size <= LIMITS.max_unzipped_bytes);
        assert!(info.entries <= LIMITS.max_entries);
        assert_eq!(info.size, data.len() as u64);
    }
});
