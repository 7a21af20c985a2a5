//! The JSON-RPC dispatcher (SPEC §7): any body gets either nothing (a
//! notification) or one JSON-RPC 2.0 response object with exactly one of
//! `result` and `error`, an error having a numeric code and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rawprox::mcp::reading::Capture;
use rawprox::mcp::rpc::{self, Control, Outcome};
use rawprox::proxy::rule::PortRule;
use rawprox::log::destination::{DestKey, Destination};
use serde_json::Value;

/// Fails every tool, so the error paths run too.
struct Refusing;

impl Control for Refusing {
    fn add_rule(&mut self, rule: PortRule) -> Result<(), String> {
        Err(format!("Port {} is already in use", rule.local_port))
    }
    fn remove_rule(&mut self, port: u16) -> Result<usize, String> {
        Err(format!("No port rule on port {port}"))
    }
    fn start_logging(&mut self, _: Destination) -> Result<(), String> {
        Err("already logging there".into())
    }
    fn stop_logging(&mut self, _: Option<DestKey>) -> Result<Vec<DestKey>, String> {
        Err("not logging there".into())
    }
    fn request_shutdown(&mut self) {}
    fn capture(&self) -> Result<Capture, String> {
        Err("no directory destination in this run".into())
    }
    fn write_soon(&mut self) -> u64 {
        0
    }
}

fn check(body: &Value) {
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body.get("id").is_some());
    match (body.get("result"), body.get("error")) {
        (Some(_), None) => {}
        (None, Some(error)) => {
            assert!(error["code"].is_i64() && error["message"].is_string(), "{error}");
        }
        _ => panic!("exactly one of result and error: {body}"),
    }
}

fuzz_target!(|input: &[u8]| {
    match rpc::handle(input, &mut Refusing) {
        Outcome::Accepted | Outcome::Later(_) => {}
        Outcome::Reply { body, .. } | Outcome::Invalid(body) => check(&body),
    }
});
