//! The command lines: the proxy's (`proxy`, SPEC §2) and the reading
//! subcommands' (`read`, SPEC §9, §10). What they share is here: one
//! spelling per option so the last value counts, option errors, and the
//! one `Error:` line every rejection ends as.

pub mod proxy;
pub mod read;

use std::ffi::OsString;

/// `Error: {message}` as one line: control characters the user typed (a
/// newline inside an argument, say) are shown escaped.
pub fn error_line(message: &str) -> String {
    let mut line = String::from("Error: ");
    for c in message.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Every option in one spelling, so that the last one given counts (SPEC
/// §2): `--name=value` of an option in `value_options` becomes `--name
/// value` (pico-args would find the two forms apart, not in order), and the
/// older rawprox's `--flush-interval-ms` becomes `--flush-millis`.
pub fn one_spelling(args: Vec<OsString>, value_options: &[&str]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        let name = if name == "--flush-interval-ms" {
            "--flush-millis"
        } else {
            name
        };
        match value {
            Some(value) if value_options.contains(&name) => {
                out.push(name.into());
                out.push(value.into());
            }
            None if value_options.contains(&name) => out.push(name.into()),
            _ => out.push(arg),
        }
    }
    out
}

/// The value of option `name`, parsed by `parse`: the last one when given
/// more than once (SPEC §2), each of them checked.
pub fn last_value<T>(
    args: &mut pico_args::Arguments,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let values: Vec<T> = args
        .values_from_fn(name, parse)
        .map_err(|e| option_error(e, name))?;
    Ok(values.into_iter().last())
}

/// A pico-args error as a message naming the option.
pub fn option_error(e: pico_args::Error, name: &str) -> String {
    match e {
        pico_args::Error::OptionWithoutAValue(_) | pico_args::Error::MissingOption(_) => {
            format!("{name} needs a value")
        }
        pico_args::Error::Utf8ArgumentParsingFailed { value, cause } => {
            format!("invalid value '{value}' for {name}: {cause}")
        }
        pico_args::Error::NonUtf8Argument => format!("the value of {name} is not valid UTF-8"),
        other => format!("{name}: {other}"),
    }
}
