#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| siskin_route::fuzzing::server_head(data));
