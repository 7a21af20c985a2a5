//! The replayed answer against the captured one (SPEC §10), byte for byte
//! as it arrives: where they first differ, a few bytes around that place
//! for the excerpt, and the verdict. It holds only the captured bytes not
//! yet matched (the feed's queue bounds them) and `CONTEXT` bytes each way.
//!
//! `Compare` is the `Write` end of the pipe that reads the server, so the
//! proxy's `Pipe::pump` moves the answer into it: when the captured bytes
//! to compare with have not been read yet, `write` says `WouldBlock` and
//! the pipe holds what it read and stops reading the server (backpressure)
//! until `expect` brings them.

use super::super::show::{is_mostly_text, push_hex_dump, push_text};
use crate::proxy::pipe::HalfClose;
use std::collections::VecDeque;
use std::io::{self, Write};

/// Bytes shown on each side of the first difference.
pub const CONTEXT: usize = 32;

/// How a replayed connection turned out (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Same,
    Differs(u64),
    Shorter,
    Longer,
    Refused,
    Reset,
    TimedOut,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Same => f.write_str("same"),
            Verdict::Differs(n) => write!(f, "differs at byte {n}"),
            Verdict::Shorter => f.write_str("shorter"),
            Verdict::Longer => f.write_str("longer"),
            Verdict::Refused => f.write_str("refused"),
            Verdict::Reset => f.write_str("reset"),
            Verdict::TimedOut => f.write_str("timed out waiting"),
        }
    }
}

/// How a replayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server closed its side.
    ServerClosed,
    /// rawprox closed it after `--wait-ms` with nothing happening.
    Waited,
    /// A reset or another error on the socket.
    Reset,
    /// No address of `--to` took the connection.
    Refused,
}

/// Both sides around the first differing byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Excerpt {
    /// Stream offset of the first byte of `captured` and `replayed`.
    pub offset: u64,
    pub captured: Vec<u8>,
    pub replayed: Vec<u8>,
}

impl Excerpt {
    /// Both sides as `follow` shows bytes: text when both are mostly text,
    /// else hex dumps with their stream offsets. Each ends with a newline.
    pub fn render(&self) -> (String, String) {
        let as_text = is_mostly_text(&self.captured) && is_mostly_text(&self.replayed);
        let show = |bytes: &[u8]| {
            let mut out = String::new();
            if as_text {
                push_text(bytes, &mut out);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            } else {
                push_hex_dump(bytes, self.offset, &mut out);
            }
            out
        };
        (show(&self.captured), show(&self.replayed))
    }
}

pub struct Compare {
    /// Captured target bytes not matched yet, in order; `front_at` of the
    /// first one is matched.
    expected: VecDeque<Vec<u8>>,
    front_at: usize,
    held: usize,
    /// The captured answer's length (from the first reading of the input).
    pub captured: u64,
    /// Bytes the server sent.
    pub received: u64,
    pub differs_at: Option<u64>,
    /// The last matched bytes, then what each side had from the difference on.
    before: VecDeque<u8>,
    after_captured: Vec<u8>,
    after_replayed: Vec<u8>,
}

impl Compare {
    pub fn new(captured: u64) -> Compare {
        Compare {
            expected: VecDeque::new(),
            front_at: 0,
            held: 0,
            captured,
            received: 0,
            differs_at: None,
            before: VecDeque::with_capacity(CONTEXT),
            after_captured: Vec::new(),
            after_replayed: Vec::new(),
        }
    }

    /// Captured bytes not matched yet.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The next captured bytes of the target, in log order.
    pub fn expect(&mut self, bytes: Vec<u8>) {
        if self.differs_at.is_some() {
            keep_some(&mut self.after_captured, &bytes);
        } else if !bytes.is_empty() {
            self.held += bytes.len();
            self.expected.push_back(bytes);
        }
    }

    /// Takes the server's next bytes; returns how many (0: the captured
    /// bytes to compare them with are not here yet).
    pub fn take(&mut self, bytes: &[u8]) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            if self.differs_at.is_some() {
                keep_some(&mut self.after_replayed, &bytes[i..]);
                i = bytes.len();
                break;
            }
            let Some(front) = self.expected.front() else {
                if self.received + i as u64 >= self.captured {
                    // Past the captured answer: nothing to compare with.
                    i = bytes.len();
                }
                break;
            };
            let want = &front[self.front_at..];
            let got = &bytes[i..];
            let n = want.len().min(got.len());
            match want[..n].iter().zip(&got[..n]).position(|(a, b)| a != b) {
                Some(k) => {
                    remember(&mut self.before, &got[..k]);
                    self.differs_at = Some(self.received + (i + k) as u64);
                    keep_some(&mut self.after_captured, &want[k..]);
                    for rest in self.expected.drain(..).skip(1) {
                        keep_some(&mut self.after_captured, &rest);
                    }
                    self.front_at = 0;
                    self.held = 0;
                    i += k;
                }
                None => {
                    remember(&mut self.before, &got[..n]);
                    self.front_at += n;
                    self.held -= n;
                    i += n;
                    if self.front_at == front.len() {
                        self.expected.pop_front();
                        self.front_at = 0;
                    }
                }
            }
        }
        self.received += i as u64;
        i
    }

    /// The verdict once the connection `ended`; a difference wins over
    /// everything after it.
    pub fn verdict(&self, ended: Ended) -> Verdict {
        if ended == Ended::Refused {
            return Verdict::Refused;
        }
        if let Some(n) = self.differs_at {
            return Verdict::Differs(n);
        }
        if ended == Ended::Reset {
            return Verdict::Reset;
        }
        match self.received.cmp(&self.captured) {
            std::cmp::Ordering::Greater => Verdict::Longer,
            std::cmp::Ordering::Less if ended == Ended::ServerClosed => Verdict::Shorter,
            std::cmp::Ordering::Less => Verdict::TimedOut,
            std::cmp::Ordering::Equal => Verdict::Same,
        }
    }

    /// Both sides around the first difference, if there is one.
    pub fn excerpt(&self) -> Option<Excerpt> {
        let at = self.differs_at?;
        let before: Vec<u8> = self.before.iter().copied().collect();
        let side = |after: &[u8]| [before.as_slice(), after].concat();
        Some(Excerpt {
            offset: at - before.len() as u64,
            captured: side(&self.after_captured),
            replayed: side(&self.after_replayed),
        })
    }
}

/// Keeps the last `CONTEXT` matched bytes.
fn remember(before: &mut VecDeque<u8>, matched: &[u8]) {
    for &b in &matched[matched.len().saturating_sub(CONTEXT)..] {
        if before.len() == CONTEXT {
            before.pop_front();
        }
        before.push_back(b);
    }
}

/// Appends to `kept` until it holds `CONTEXT` bytes.
fn keep_some(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = CONTEXT.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

impl Write for Compare {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.take(buf) {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HalfClose for Compare {
    /// The server's end of file reaches nothing further.
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_in_any_cut() {
        let mut c = Compare::new(11);
        assert_eq!(c.take(b"hel"), 0, "nothing captured yet to compare with");
        c.expect(b"hello".to_vec());
        c.expect(b" world".to_vec());
        assert_eq!(c.take(b"hel"), 3);
        assert_eq!(c.take(b"lo w"), 4);
        assert_eq!(c.take(b"orld"), 4);
        assert_eq!(c.held(), 0);
        assert_eq!(c.verdict(Ended::ServerClosed), Verdict::Same);
        assert_eq!(c.take(b"!!"), 2, "past the captured answer");
        assert_eq!(c.verdict(Ended::Waited), Verdict::Longer);
    }

    #[test]
    fn first_difference_and_its_excerpt() {
        let mut c = Compare::new(14);
        c.expect(b"HTTP/1.1 200".to_vec());
        c.expect(b"OK".to_vec());
        assert_eq!(c.take(b"HTTP/1.1 "), 9);
        assert_eq!(c.take(b"500 Oops"), 8);
        assert_eq!(c.differs_at, Some(9));
        assert_eq!(c.held(), 0, "nothing is held past a difference");
        c.expect(b" more".to_vec());
        assert_eq!(c.verdict(Ended::ServerClosed), Verdict::Differs(9));
        let e = c.excerpt().unwrap();
        assert_eq!(e.offset, 0);
        assert_eq!(e.captured, b"HTTP/1.1 200OK more");
        assert_eq!(e.replayed, b"HTTP/1.1 500 Oops");
        let (captured, replayed) = e.render();
        assert_eq!(captured, "HTTP/1.1 200OK more\n");
        assert_eq!(replayed, "HTTP/1.1 500 Oops\n");
    }

    #[test]
    fn the_excerpt_keeps_context_only_and_binary_is_hex() {
        let mut c = Compare::new(100);
        let captured: Vec<u8> = (0..100).map(|b| b % 16).collect();
        c.expect(captured.clone());
        let mut replayed = captured.clone();
        replayed[70] = 0xFF;
        assert_eq!(c.take(&replayed), 100);
        let e = c.excerpt().unwrap();
        assert_eq!(e.offset, 70 - CONTEXT as u64);
        assert_eq!(e.captured, captured[38..]);
        assert_eq!(e.replayed, replayed[38..]);
        let (text, _) = e.render();
        assert!(text.starts_with("00000026  06 07"), "{text}");
    }

    #[test]
    fn short_answers_by_how_they_ended() {
        let mut c = Compare::new(5);
        c.expect(b"hello".to_vec());
        c.take(b"he");
        assert_eq!(c.verdict(Ended::ServerClosed), Verdict::Shorter);
        assert_eq!(c.verdict(Ended::Waited), Verdict::TimedOut);
        assert_eq!(c.verdict(Ended::Reset), Verdict::Reset);
        assert_eq!(c.verdict(Ended::Refused), Verdict::Refused);
        assert_eq!(Verdict::Differs(7).to_string(), "differs at byte 7");
    }
}
