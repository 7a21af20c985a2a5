//! The tools' arguments (SPEC §7): a call's arguments checked against its
//! tool's schema (every missing one named, one the tool does not have
//! refused), and the value kinds several tools share. Each tool reads its
//! own arguments (`rpc.rs`, `reading.rs`) with these.

use serde_json::{Map, Value};

/// Checks the arguments of a call to `tool` against its `inputSchema`
/// (`properties`, `required`): an argument the tool does not have is
/// refused, so a typo never passes silently, and every missing one is
/// named, all in one message (SPEC §7).
pub fn check(tool: &str, schema: &Value, args: &Map<String, Value>) -> Result<(), String> {
    let names = |key: &str| -> Vec<&str> {
        match &schema[key] {
            Value::Object(properties) => properties.keys().map(String::as_str).collect(),
            Value::Array(required) => required.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    };
    let takes = names("properties");
    let unknown: Vec<&str> = args
        .keys()
        .map(String::as_str)
        .filter(|name| !takes.contains(name))
        .collect();
    let missing: Vec<&str> = names("required")
        .into_iter()
        .filter(|name| !args.contains_key(*name))
        .collect();
    let mut problems = Vec::new();
    if !unknown.is_empty() {
        let takes = if takes.is_empty() {
            format!("{tool} takes no arguments")
        } else {
            format!("{tool} takes {}", takes.join(", "))
        };
        problems.push(format!(
            "unknown {} {} ({takes})",
            plural("argument", unknown.len()),
            unknown
                .iter()
                .map(|n| shown(n))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !missing.is_empty() {
        problems.push(format!(
            "missing {} {}",
            plural("argument", missing.len()),
            missing.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn plural(word: &str, n: usize) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// An argument name from the client, quoted, and cut if it is long.
fn shown(name: &str) -> String {
    const MOST: usize = 64;
    match name.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{:?}...", &name[..cut]),
        None => format!("{name:?}"),
    }
}

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

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": { "a": {}, "b": {}, "c": {} },
            "required": ["a", "b"]
        })
    }

    fn check_json(args: Value) -> Result<(), String> {
        check("t", &schema(), args.as_object().unwrap())
    }

    #[test]
    fn every_missing_and_every_unknown_argument_is_named() {
        assert_eq!(check_json(json!({"a": 1, "b": null})), Ok(()));
        assert_eq!(
            check_json(json!({"a": 1, "b": 2, "c": 3})),
            Ok(()),
            "optional c"
        );
        assert_eq!(check_json(json!({})), Err("missing arguments a, b".into()));
        assert_eq!(
            check_json(json!({"b": 1})),
            Err("missing argument a".into())
        );
        assert_eq!(
            check_json(json!({"a": 1, "b": 2, "port": 3})),
            Err(r#"unknown argument "port" (t takes a, b, c)"#.into())
        );
        assert_eq!(
            check_json(json!({"x": 1, "y": 2})),
            Err(r#"unknown arguments "x", "y" (t takes a, b, c); missing arguments a, b"#.into())
        );
        let none = json!({"type": "object", "properties": {}, "required": []});
        let long = "z".repeat(1000);
        let args = json!({ long.clone(): 1 });
        let message = check("shutdown", &none, args.as_object().unwrap()).unwrap_err();
        assert!(
            message.ends_with("(shutdown takes no arguments)"),
            "{message}"
        );
        assert!(message.len() < 200, "{message}");
    }

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
