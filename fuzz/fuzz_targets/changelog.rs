//! The changelog's decoders on any key and value (a changelog topic is input too: written by
//! an older build, or by hand): they never panic, and whatever decodes encodes back to a
//! value that decodes to the same record.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionflow::changelog::{
    addressed, decode_state, decode_watermark, encode_state, encode_watermark,
};

fuzz_target!(|bytes: &[u8]| {
    // The first byte splits key from value, so both vary.
    let split = bytes
        .first()
        .map_or(0, |&b| usize::from(b))
        .min(bytes.len());
    let (key, value) = bytes.split_at(split);
    let _ = addressed(key, Some(value));
    let _ = addressed(key, None);
    if let Ok(state) = decode_state(value) {
        let mut encoded = Vec::new();
        encode_state(&mut encoded, &state);
        assert_eq!(decode_state(&encoded), Ok(state));
    }
    if let Ok(progress) = decode_watermark(value) {
        let mut encoded = Vec::new();
        encode_watermark(&mut encoded, &progress);
        assert_eq!(decode_watermark(&encoded), Ok(progress));
    }
});
