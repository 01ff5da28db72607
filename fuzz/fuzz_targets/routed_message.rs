//! Feeds arbitrary text to the converter's routed-message parser (RPC calls, CloudEvents,
//! aggregates). It must return events or a reason, never panic, and every event it
//! returns names a function.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    match ember_events::convert::routed(body) {
        Ok(r) => {
            assert!(!r.events.is_empty());
            assert!(r.events.len() <= ember_events::convert::MAX_AGGREGATE);
            assert!(r.events.iter().all(|e| !e.function.is_empty()));
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
