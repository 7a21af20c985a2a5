//! The ConnID (SPEC §4): 8 base-62 digits, `0-9A-Za-z` in that order of
//! value. The sequence starts from the microseconds since the epoch at
//! start-up and counts up by one per logged `open`, wrapping past `zzzzzzzz`;
//! a reader parses one back from its line.

use std::fmt;

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// 62^8: the number of distinct ConnIDs.
pub const ID_SPACE: u64 = 218_340_105_584_896;

/// Hands out ConnIDs in order. The caller takes one only when it logs an
/// `open`, so logged IDs have no gaps.
#[derive(Debug, Clone)]
pub struct ConnIdSeq {
    next: u64,
}

impl ConnIdSeq {
    /// A sequence whose first ID is the last 8 base-62 digits of `micros`.
    pub fn starting_at(micros: u64) -> Self {
        ConnIdSeq {
            next: micros % ID_SPACE,
        }
    }

    /// Takes the next ID.
    pub fn take(&mut self) -> ConnId {
        let id = encode(self.next);
        self.next = (self.next + 1) % ID_SPACE;
        id
    }
}

/// One ConnID, as its 8 ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub [u8; 8]);

impl ConnId {
    /// A ConnID as a line has it: 8 ASCII alphanumerics.
    pub fn parse(text: &[u8]) -> Option<ConnId> {
        let id: [u8; 8] = text.try_into().ok()?;
        id.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(ConnId(id))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ConnIDs are ASCII alphanumerics")
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn encode(mut value: u64) -> ConnId {
    let mut out = [b'0'; 8];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 62) as usize];
        value /= 62;
    }
    ConnId(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_in_order_of_value() {
        let mut seq = ConnIdSeq::starting_at(0);
        assert_eq!(seq.take().as_str(), "00000000");
        assert_eq!(seq.take().as_str(), "00000001");
        let mut seq = ConnIdSeq::starting_at(61);
        assert_eq!(seq.take().as_str(), "0000000z");
        assert_eq!(seq.take().as_str(), "00000010");
        let mut seq = ConnIdSeq::starting_at(10 * 62 + 36);
        assert_eq!(seq.take().as_str(), "000000Aa");
    }

    #[test]
    fn keeps_the_last_eight_digits_of_the_start() {
        // 62^8 + 5 keeps only the low 8 digits.
        let mut seq = ConnIdSeq::starting_at(ID_SPACE + 5);
        assert_eq!(seq.take().as_str(), "00000005");
    }

    #[test]
    fn wraps_after_zzzzzzzz() {
        let mut seq = ConnIdSeq::starting_at(ID_SPACE - 2);
        assert_eq!(seq.take().as_str(), "zzzzzzzy");
        assert_eq!(seq.take().as_str(), "zzzzzzzz");
        assert_eq!(seq.take().as_str(), "00000000");
        assert_eq!(seq.take().as_str(), "00000001");
    }
}
