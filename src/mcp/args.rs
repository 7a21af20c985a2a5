//! The tools' arguments (SPEC §7): the value kinds several tools share.
//! Each tool reads its own arguments (`rpc.rs`, `reading.rs`) with these.

use serde_json::Value;

/// A port argument `name`: a number, or a string of plain digits as some
/// clients send (no sign, no spaces: SPEC §7, as on the command line),
/// 1-65535.
pub fn port(name: &str, value: &Value) -> Result<u16, String> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    match number {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("{name} must be a port number 1-65535, not {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_are_numbers_or_plain_digits() {
        for good in [json!(1), json!(65535), json!("31058"), json!("080")] {
            assert!(port("p", &good).is_ok(), "{good}");
        }
        for bad in [
            json!(0),
            json!(65536),
            json!(-1),
            json!(1.5),
            json!(""),
            json!(" 1"),
            json!("+1"),
            json!("1e3"),
            json!(null),
        ] {
            let message = port("p", &bad).unwrap_err();
            assert!(message.starts_with("p must be a port number"), "{message}");
        }
    }
}
