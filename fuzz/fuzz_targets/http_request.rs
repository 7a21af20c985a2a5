//! The MCP endpoint's HTTP side (SPEC §7): any bytes either wait for more,
//! or get a well-formed HTTP response whose Content-Length matches its body,
//! through the JSON-RPC dispatcher when the request is whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::mcp::http::{self, Parsed};
use rawprox::mcp::server::{HELD_BUDGET, Response, respond};
use rawprox::mcp::reading::Capture;
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
    fn request_shutdown(&mut self) {}
    fn capture(&self) -> Result<Capture, String> {
        Ok(Capture {
            directories: Vec::new(),
            run_started_micros: 0,
        })
    }
    fn write_soon(&mut self) -> u64 {
        0
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
            match respond(&request, &mut Accepting, HELD_BUDGET) {
                Response::Now(answer) => check_response(&answer.bytes),
                // A tool that waits for the log: nothing to send now.
                Response::Later(_) => {}
            }
        }
        Parsed::Reject(status, why) => {
            assert!((400..500).contains(&status), "{status}");
            check_response(&http::response(status, &[], why.as_bytes(), false, false));
        }
    }
});
