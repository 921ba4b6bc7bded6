//! Every `ClientMessage` that parses serialises (serde_json) to a frame that parses back to an
//! equal value.
#![no_main]

use herald_protocol::ws::parse_client_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = parse_client_message(text) {
        let json = serde_json::to_string(&m).expect("a ClientMessage always serialises");
        let again = parse_client_message(&json);
        assert_eq!(
            again.as_ref(),
            Ok(&m),
            "round trip changed the message\ninput: {text:?}\nre-encoded: {json}"
        );
    }
});
