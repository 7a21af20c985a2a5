//! Telling the user that a rule's target cannot be reached (SPEC §3): one
//! stderr line per rule per second at most, naming the rule, the target and
//! the system's reason, with a count of the failures held back since the
//! last line. So a wrong target port shows at once, and a flood of
//! failures cannot fill a disk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shortest time between two lines of one rule.
const EVERY: Duration = Duration::from_secs(1);

/// Per rule (by local port): when its last line was written, and the
/// failures since then that got no line.
#[derive(Default)]
pub struct Unreachable {
    rules: HashMap<u16, (Instant, u64)>,
}

impl Unreachable {
    /// A connection of rule `listen_port` to `target` failed for `reason`:
    /// the line to print now, if one is due.
    pub fn line(
        &mut self,
        now: Instant,
        listen_port: u16,
        target: &str,
        reason: &str,
    ) -> Option<String> {
        let held_back = match self.rules.get_mut(&listen_port) {
            Some((last, held)) if now.duration_since(*last) < EVERY => {
                *held += 1;
                return None;
            }
            Some((last, held)) => {
                *last = now;
                std::mem::take(held)
            }
            None => {
                self.rules.insert(listen_port, (now, 0));
                0
            }
        };
        let more = match held_back {
            0 => String::new(),
            n => format!(" ({n} more failures held back since the last line)"),
        };
        Some(format!(
            "rawprox: {listen_port} -> {target}: {reason}{more}"
        ))
    }

    /// Prints the line for a failure, if one is due.
    pub fn report(&mut self, listen_port: u16, target: &str, reason: &str) {
        if let Some(line) = self.line(Instant::now(), listen_port, target, reason) {
            eprintln!("{line}");
        }
    }
}

/// The system's reason in the words people know: `connection refused`, not
/// `Connection refused (os error 111)`.
pub fn reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_rule_per_second_with_the_count_held_back() {
        let mut u = Unreachable::default();
        let t0 = Instant::now();
        let line = u.line(t0, 8080, "127.0.0.1:9001", "connection refused");
        assert_eq!(
            line.as_deref(),
            Some("rawprox: 8080 -> 127.0.0.1:9001: connection refused")
        );
        assert_eq!(u.line(t0 + Duration::from_millis(10), 8080, "t", "r"), None);
        assert_eq!(
            u.line(t0 + Duration::from_millis(900), 8080, "t", "r"),
            None
        );
        // Another rule has its own second.
        assert!(
            u.line(t0 + Duration::from_millis(20), 8081, "t", "r")
                .is_some()
        );
        let line = u.line(t0 + Duration::from_millis(1000), 8080, "t", "r");
        assert_eq!(
            line.as_deref(),
            Some("rawprox: 8080 -> t: r (2 more failures held back since the last line)")
        );
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(reason(&e), "connection refused");
    }
}
