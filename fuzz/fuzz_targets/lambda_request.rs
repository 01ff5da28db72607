//! Feeds arbitrary bytes to the CreateFunction decoder (JSON parsing and every field
//! check). It must answer with a value or an AWS error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = ember_api::lambda::decode_create_function(data, "123456789012") {
        assert!(e.status.is_client_error(), "{e}");
    }
});
