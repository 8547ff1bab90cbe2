#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    openclaw_trace::fuzzing::query(data);
});
