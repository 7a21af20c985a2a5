//! The MCP endpoint's HTTP side (SPEC §7): any bytes either wait for more,
//! or get a well-formed HTTP response whose Content-Length matches its body,
//! through the JSON-RPC dispatcher when the request is whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::mcp::http::{self, Parsed};
use rawprox::mcp::respond;
use rawprox::mcp::reading::Query;
use rawprox::mcp::rpc::Control;
use rawprox::proxy::rule::PortRule;
use rawprox::log::destination::{DestKey, Destination};

/// Says yes to everything, touching nothing.
struct Accepting;

impl Control for Accepting {
    fn add_rule(&mut self, _: PortRule) -> Result<(), String> {
        Ok(())
    }
    fn remove_rule(&mut self, _: u16) -> Result<usize, String> {
        Ok(0)
    }
    fn start_logging(&mut self, _: Destination) -> Result<(), String> {
        Ok(())
    }
    fn stop_logging(&mut self, _: Option<DestKey>) -> Result<Vec<DestKey>, String> {
        Ok(Vec::new())
    }
    fn shutdown(&mut self) {}
    fn read_capture(&mut self, _: Query) -> Result<(), String> {
        Ok(())
    }
}

fn check_response(bytes: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("not a whole HTTP response: {other:?}"),
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
        .expect("a Content-Length");
    assert_eq!(bytes.len() - head, length, "body length matches Content-Length");
}

fuzz_target!(|input: &[u8]| {
    match http::parse(input) {
        Parsed::Incomplete => {}
        Parsed::Complete(request, used) => {
            assert!(used <= input.len());
            let answer = respond(&request, &mut Accepting);
            match answer.later {
                // A reading tool: the answer comes later, nothing now.
                Some(_) => assert!(answer.bytes.is_empty()),
                None => check_response(&answer.bytes),
            }
        }
        Parsed::Reject(status, why) => {
            assert!((400..500).contains(&status), "{status}");
            check_response(&http::response(status, &[], why.as_bytes(), false, false));
        }
    }
});
