//! `pcap` (SPEC §9): a pcapng file that Wireshark and tshark open as real
//! TCP conversations, synthesized from the log as it streams by. Each
//! connection gets a three-way handshake at its `open`, a segment (and the
//! peer's ACK) per data line with true sequence numbers and checksums, a
//! FIN from the side that closed first at the `close`, and the other side's
//! FIN once the connection is retired (see `track`), at its last line's time.
//!
//! The pcapng blocks are written here (a section header, one interface of
//! link type RAW so IPv4 and IPv6 packets share it, enhanced packet blocks,
//! name resolution blocks): four block types do not need a crate.

use super::Error;
use super::input::Input;
use super::lines::Skipped;
use super::pipeline::{Event, Selection, events};
use super::track::Conn;
use crate::format::connid::ConnId;
use crate::format::side::Side;
use crate::format::time::Time;
use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::ControlFlow;

/// LINKTYPE_RAW: each packet starts with its IPv4 or IPv6 header.
const LINKTYPE_RAW: u16 = 101;
/// Largest payload of one synthesized segment (rawprox logs reads of at
/// most 32 KiB; other tools' lines may hold more, which are split).
const MAX_SEGMENT: usize = 32 * 1024;
/// The longest host name a name resolution block holds.
const MAX_NAME_BYTES: usize = 255;

/// The stand-in addresses for target host names: 198.18.0.0/15 (RFC 2544).
const STAND_IN_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const STAND_IN_COUNT: u32 = 1 << 17;

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PcapStats {
    pub connections: u64,
    pub packets: u64,
}

/// One end of a synthesized TCP stream.
#[derive(Clone, Copy)]
struct Endpoint {
    /// IPv4 addresses as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    ip: Ipv6Addr,
    port: u16,
}

/// A connection's TCP state.
struct Flow {
    ends: [Endpoint; 2],
    /// Both ends IPv4: IPv4 packets; else IPv6 (an IPv4 end mapped).
    v4: bool,
    /// Next sequence number of each side.
    next_seq: [u32; 2],
    fin_sent: [bool; 2],
    /// The comment for the connection's first packet, until it is written.
    comment: Option<String>,
}

/// The pcapng writer and the stand-in names.
struct Writer<W: Write> {
    out: W,
    /// A packet block's headers and tail; its payload is written to `out`
    /// from the decoder's buffer.
    packet: Vec<u8>,
    stand_ins: HashMap<String, Ipv4Addr>,
    ip_id: u16,
    stats: PcapStats,
}

/// Writes the pcapng of the connections in `inputs` (those of listen port
/// `port`, if given) to `out`.
pub fn write_pcap(
    inputs: &[Input],
    port: Option<u16>,
    out: impl Write,
) -> Result<(PcapStats, Skipped), Error> {
    let mut w = Writer {
        out,
        packet: Vec::with_capacity(256),
        stand_ins: HashMap::new(),
        ip_id: 0,
        stats: PcapStats::default(),
    };
    w.headers().map_err(Error::output)?;
    let select = Selection {
        port,
        ..Selection::default()
    };
    let skipped = events::<Option<Flow>>(inputs, &select, |event| {
        match event {
            Event::Open { id, time, conn } => w.open(id, time, conn),
            Event::Data {
                time,
                side,
                bytes,
                conn,
                ..
            } => match conn.state.as_mut() {
                Some(flow) => w.data(time, flow, side, bytes),
                None => Ok(()),
            },
            Event::Close {
                time, side, conn, ..
            } => match conn.state.as_mut() {
                Some(flow) => w.fin(time, flow, side),
                None => Ok(()),
            },
            Event::Retired { conn, .. } => w.retire(conn),
            Event::Caught => Ok(()),
        }
        .map_err(Error::output)?;
        Ok(ControlFlow::Continue(()))
    })?;
    w.out.flush().map_err(Error::output)?;
    Ok((w.stats, skipped))
}

impl<W: Write> Writer<W> {
    /// Section header and the one interface.
    fn headers(&mut self) -> std::io::Result<()> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        push_option(
            &mut shb,
            1,
            b"Synthesized by rawprox from its NDJSON log: rawprox never captured these \
              packets. Payloads and their times are the log's; the handshakes, ACKs and FINs \
              are made up to match its open, data and close lines.",
        );
        push_option(
            &mut shb,
            4,
            format!("rawprox {}", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        push_option(&mut shb, 0, b"");
        self.block(0x0A0D_0D0A, &shb)?;
        let mut idb = Vec::new();
        idb.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&0u32.to_le_bytes()); // snap length: none
        push_option(&mut idb, 2, b"rawprox");
        push_option(&mut idb, 3, b"TCP synthesized from a rawprox log");
        push_option(&mut idb, 9, &[6]); // microseconds, as the log's times
        push_option(&mut idb, 0, b"");
        self.block(1, &idb)
    }

    fn block(&mut self, kind: u32, body: &[u8]) -> std::io::Result<()> {
        debug_assert!(body.len().is_multiple_of(4));
        let len = (body.len() + 12) as u32;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(body)?;
        self.out.write_all(&len.to_le_bytes())
    }

    /// The address of one end as logged: an IP literal, or a host name's
    /// stand-in (a name resolution block maps it back, written before its
    /// first packet).
    fn endpoint(&mut self, addr: &str) -> std::io::Result<Endpoint> {
        let (host, port) = match addr.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(0)),
            None => (addr, 0),
        };
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // A zone (`fe80::1%eth0`) has no place in a packet.
            let inner = inner.split('%').next().unwrap_or(inner);
            if let Ok(ip) = inner.parse::<Ipv6Addr>() {
                return Ok(Endpoint { ip, port });
            }
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Endpoint {
                ip: ip.to_ipv6_mapped(),
                port,
            });
        }
        let ip = match self.stand_ins.get(host) {
            Some(ip) => *ip,
            None => {
                let n = self.stand_ins.len() as u32 % (STAND_IN_COUNT - 2);
                let ip = Ipv4Addr::from(STAND_IN_BASE + 1 + n);
                self.stand_ins.insert(host.to_owned(), ip);
                self.name_block(ip, host)?;
                ip
            }
        };
        Ok(Endpoint {
            ip: ip.to_ipv6_mapped(),
            port,
        })
    }

    /// A name resolution block: the stand-in, as IPv4 and as IPv4-mapped
    /// IPv6 (for a stream with an IPv6 client), to `name`, cut to
    /// `MAX_NAME_BYTES` (a record's length is 16 bits, and no host name is
    /// longer than 253 bytes) and to its first NUL (which would end it).
    fn name_block(&mut self, ip: Ipv4Addr, name: &str) -> std::io::Result<()> {
        let name = name.split('\0').next().unwrap_or_default();
        let name = &name[..name.floor_char_boundary(MAX_NAME_BYTES)];
        let mut nrb = Vec::new();
        let mut record = |kind: u16, addr: &[u8]| {
            let mut value = addr.to_vec();
            value.extend_from_slice(name.as_bytes());
            value.push(0);
            push_option(&mut nrb, kind, &value);
        };
        record(1, &ip.octets());
        record(2, &ip.to_ipv6_mapped().octets());
        push_option(&mut nrb, 0, b"");
        // No options after the records.
        nrb.extend_from_slice(&0u32.to_le_bytes());
        self.block(4, &nrb)
    }

    /// Starts a connection's flow, with a handshake at its `open` (one
    /// whose `open` is not in the input starts without).
    fn open(
        &mut self,
        id: ConnId,
        time: Time,
        conn: &mut Conn<Option<Flow>>,
    ) -> std::io::Result<()> {
        let ends = [self.endpoint(&conn.client)?, self.endpoint(&conn.target)?];
        let v4 = ends.iter().all(|e| e.ip.to_ipv4_mapped().is_some());
        // Initial sequence numbers from the ConnID: the same log gives the
        // same file.
        let hash = id.0.iter().fold(0x811C_9DC5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let comment = match conn.listen_port.filter(|_| conn.opened) {
            Some(port) => format!("ConnID {id} (listen port {port})"),
            None => format!("ConnID {id} (its open is not in the log)"),
        };
        let flow = conn.state.insert(Flow {
            ends,
            v4,
            next_seq: [hash, hash.rotate_left(16) ^ 0x5A5A_5A5A],
            fin_sent: [false; 2],
            comment: Some(comment),
        });
        self.stats.connections += 1;
        if conn.opened {
            self.handshake(time, flow)?;
        }
        Ok(())
    }

    fn handshake(&mut self, time: Time, flow: &mut Flow) -> std::io::Result<()> {
        let [c, t] = flow.next_seq;
        self.segment(time, flow, Side::Client, SYN, c, 0, &[])?;
        self.segment(
            time,
            flow,
            Side::Target,
            SYN | ACK,
            t,
            c.wrapping_add(1),
            &[],
        )?;
        flow.next_seq = [c.wrapping_add(1), t.wrapping_add(1)];
        self.ack(time, flow, Side::Client)
    }

    /// A data line: its bytes as segments from `side`, each acknowledged.
    fn data(
        &mut self,
        time: Time,
        flow: &mut Flow,
        side: Side,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        for chunk in bytes.chunks(MAX_SEGMENT) {
            let (seq, ack) = (
                flow.next_seq[side as usize],
                flow.next_seq[side.other() as usize],
            );
            self.segment(time, flow, side, PSH | ACK, seq, ack, chunk)?;
            flow.next_seq[side as usize] = seq.wrapping_add(chunk.len() as u32);
            self.ack(time, flow, side.other())?;
        }
        Ok(())
    }

    /// A FIN from `side`, acknowledged.
    fn fin(&mut self, time: Time, flow: &mut Flow, side: Side) -> std::io::Result<()> {
        if std::mem::replace(&mut flow.fin_sent[side as usize], true) {
            return Ok(());
        }
        let (seq, ack) = (
            flow.next_seq[side as usize],
            flow.next_seq[side.other() as usize],
        );
        self.segment(time, flow, side, FIN | ACK, seq, ack, &[])?;
        flow.next_seq[side as usize] = seq.wrapping_add(1);
        self.ack(time, flow, side.other())
    }

    /// A pure ACK from `side` of everything the other side sent.
    fn ack(&mut self, time: Time, flow: &mut Flow, side: Side) -> std::io::Result<()> {
        let (seq, ack) = (
            flow.next_seq[side as usize],
            flow.next_seq[side.other() as usize],
        );
        self.segment(time, flow, side, ACK, seq, ack, &[])
    }

    /// A connection leaves: if one side closed, the other's FIN now, at the
    /// connection's last line's time (the log cannot say when it ended).
    /// One still open at the end of the log ends without FINs, as it was.
    fn retire(&mut self, mut conn: Conn<Option<Flow>>) -> std::io::Result<()> {
        if let (Some(first), Some(flow)) = (conn.closed_by, conn.state.as_mut()) {
            self.fin(conn.last, flow, first.other())?;
        }
        Ok(())
    }

    /// Writes one enhanced packet block: IP and TCP headers with their
    /// checksums, then `payload`; the flow's comment on its first packet.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        time: Time,
        flow: &mut Flow,
        from: Side,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let (src, dst) = (flow.ends[from as usize], flow.ends[from.other() as usize]);
        let p = &mut self.packet;
        p.clear();
        let tcp_len = 20 + payload.len();
        // The IP header, then the TCP header's start within the packet.
        let mut pseudo = 0u64;
        let tcp_at = if flow.v4 {
            let (s, d) = (
                src.ip.to_ipv4_mapped().expect("v4 flow").octets(),
                dst.ip.to_ipv4_mapped().expect("v4 flow").octets(),
            );
            self.ip_id = self.ip_id.wrapping_add(1);
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            p.extend_from_slice(&self.ip_id.to_be_bytes());
            p.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]); // DF, TTL 64, TCP
            p.extend_from_slice(&s);
            p.extend_from_slice(&d);
            let sum = fold(sum_words(&p[..20], 0));
            p[10..12].copy_from_slice(&(!sum).to_be_bytes());
            pseudo = sum_words(&s, pseudo);
            pseudo = sum_words(&d, pseudo);
            pseudo += 6 + tcp_len as u64;
            20
        } else {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            p.extend_from_slice(&[6, 64]); // TCP, hop limit 64
            p.extend_from_slice(&src.ip.octets());
            p.extend_from_slice(&dst.ip.octets());
            pseudo = sum_words(&src.ip.octets(), pseudo);
            pseudo = sum_words(&dst.ip.octets(), pseudo);
            pseudo += 6 + tcp_len as u64;
            40
        };
        p.extend_from_slice(&src.port.to_be_bytes());
        p.extend_from_slice(&dst.port.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(if flags & ACK != 0 { ack } else { 0 }).to_be_bytes());
        p.extend_from_slice(&[5 << 4, flags]);
        p.extend_from_slice(&u16::MAX.to_be_bytes()); // window
        p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        // The TCP header is whole 32-bit words: the payload's sum follows.
        let sum = fold(sum_words(payload, sum_words(&p[tcp_at..], pseudo)));
        p[tcp_at + 16..tcp_at + 18].copy_from_slice(&(!sum).to_be_bytes());
        // The block: its head, the headers (in `p`), the payload as it is,
        // then padding, options and the length again (in `p`, after the
        // headers).
        let headers = p.len();
        let captured = headers + payload.len();
        let padding = (4 - captured % 4) % 4;
        let comment = flow.comment.take();
        let options_len = comment
            .as_ref()
            .map_or(0, |c| 4 + c.len().div_ceil(4) * 4 + 4);
        let total = (28 + captured + padding + options_len + 4) as u32;
        let micros = time.0.max(0) as u64;
        let mut head = [0u8; 28];
        head[0..4].copy_from_slice(&6u32.to_le_bytes());
        head[4..8].copy_from_slice(&total.to_le_bytes());
        head[12..16].copy_from_slice(&((micros >> 32) as u32).to_le_bytes());
        head[16..20].copy_from_slice(&(micros as u32).to_le_bytes());
        head[20..24].copy_from_slice(&(captured as u32).to_le_bytes());
        head[24..28].copy_from_slice(&(captured as u32).to_le_bytes());
        p.extend_from_slice(&[0; 3][..padding]);
        if let Some(comment) = comment {
            push_option(p, 1, comment.as_bytes());
            push_option(p, 0, b"");
        }
        p.extend_from_slice(&total.to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(&p[..headers])?;
        self.out.write_all(payload)?;
        self.out.write_all(&p[headers..])?;
        self.stats.packets += 1;
        Ok(())
    }
}

/// A pcapng option (or name record): code, length, value padded to 32 bits.
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    debug_assert!(
        value.len() <= usize::from(u16::MAX),
        "an option's length is 16 bits"
    );
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

/// Adds `bytes` to a ones'-complement sum of big-endian 16-bit words, as
/// the Internet checksum takes them (`bytes` starts at a word boundary of
/// the sum; an odd tail is padded). Summed as little-endian 32-bit words, so
/// that no byte is swapped per word: a ones' complement sum in the other
/// byte order is the same sum with its two bytes swapped (RFC 1071, 2.B),
/// so one swap of the folded sum is enough.
fn sum_words(bytes: &[u8], acc: u64) -> u64 {
    let mut sum = 0u64;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_le_bytes(w.try_into().expect("4 bytes")));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 4];
        last[..tail.len()].copy_from_slice(tail);
        sum += u64::from(u32::from_le_bytes(last));
    }
    acc + u64::from(fold(sum).swap_bytes())
}

/// Folds a sum to 16 bits with end-around carries.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_checksum_of_a_known_header() {
        // RFC 1071's example words, and an IPv4 header with its checksum.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(
            fold(sum_words(&header, 0)),
            0xFFFF,
            "a correct header sums to all ones"
        );
        assert_eq!(fold(sum_words(&[0x00, 0x01, 0xf2], 0)), 0xf201);
    }

    /// The sum taken in the other byte order is the Internet sum, taken
    /// here in big-endian 16-bit words.
    #[test]
    fn a_swapped_sum_is_the_internet_sum() {
        let big_endian_sum = |bytes: &[u8], acc: u64| -> u64 {
            let words = bytes.chunks(2);
            acc + words
                .map(|w| u64::from(w[0]) << 8 | u64::from(*w.get(1).unwrap_or(&0)))
                .sum::<u64>()
        };
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: Vec<u8> = (0..70_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for len in (0..200).chain([65_535, 65_536, 70_000]) {
            let b = &bytes[..len];
            assert_eq!(
                fold(sum_words(b, 0)),
                fold(big_endian_sum(b, 0)),
                "{len} bytes"
            );
            assert_eq!(
                fold(sum_words(b, 0x1234_5678)),
                fold(big_endian_sum(b, 0x1234_5678))
            );
        }
        assert_eq!(fold(sum_words(&[0xFF; 1000], 0)), 0xFFFF);
    }

    fn blocks(file: &[u8]) -> Vec<(u32, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < file.len() {
            let kind = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
            assert!(len.is_multiple_of(4));
            let end_len = u32::from_le_bytes(file[at + len - 4..at + len].try_into().unwrap());
            assert_eq!(end_len as usize, len, "block lengths agree");
            out.push((kind, &file[at + 8..at + len - 4]));
            at += len;
        }
        out
    }

    /// Every packet's TCP checksum verifies, summed here in 16-bit words
    /// over the pseudo-header and the segment: IPv4 and IPv6, payloads of
    /// odd and even lengths, some split into several segments.
    #[test]
    fn every_tcp_checksum_verifies() {
        let line = |id: &str, from: &str, to: &str, len: usize| {
            let data: String = (0..len)
                .map(|k| format!("%{:02X}", (k * 7 + len) as u8))
                .collect();
            format!(
                r#"{{"time":"2025-10-22T15:32:47.100000Z","ConnID":"{id}","data":"{data}","from":"{from}","to":"{to}"}}"#
            )
        };
        let mut log = String::new();
        for (id, client, target) in [
            ("0000000A", "127.0.0.1:5", "127.0.0.1:80"),
            ("0000000B", "[::1]:6", "[::1]:81"),
        ] {
            for len in [1, 2, 3, 5, 31, 33, 1001, 32 * 1024 + 3, 70_001] {
                log += &line(id, client, target, len);
                log.push('\n');
                log += &line(id, target, client, len + 1);
                log.push('\n');
            }
        }
        let mut file = Vec::new();
        let (stats, skipped) =
            write_pcap(&[Input::Bytes(log.into_bytes())], None, &mut file).unwrap();
        assert_eq!(skipped.count, 0);
        let sum16 = |bytes: &[u8]| -> u32 {
            bytes
                .chunks(2)
                .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
                .sum()
        };
        let mut checked = 0;
        for (_, epb) in blocks(&file).into_iter().filter(|b| b.0 == 6) {
            let len = u32::from_le_bytes(epb[12..16].try_into().unwrap()) as usize;
            let ip = &epb[20..20 + len];
            let (src_dst, tcp) = match ip[0] >> 4 {
                4 => (&ip[12..20], &ip[20..]),
                6 => (&ip[8..40], &ip[40..]),
                v => panic!("IP version {v}"),
            };
            let total = sum16(src_dst) + 6 + tcp.len() as u32 + sum16(tcp);
            assert_eq!(
                fold(u64::from(total)),
                0xFFFF,
                "TCP checksum of a {len}-byte packet"
            );
            checked += 1;
        }
        assert_eq!(checked, stats.packets);
        assert!(checked > 40);
    }

    #[test]
    fn blocks_of_a_small_log() {
        let log = [
            r#"{"time":"2025-10-22T15:32:47.000000Z","ConnID":"0000000A","event":"open","from":"127.0.0.1:5","to":"localhost:80","listen_port":9}"#,
            r#"{"time":"2025-10-22T15:32:47.100000Z","ConnID":"0000000A","data":"GET / HTTP/1.0\r\n\r\n","from":"127.0.0.1:5","to":"localhost:80"}"#,
            r#"{"time":"2025-10-22T15:32:47.200000Z","ConnID":"0000000A","event":"close","from":"127.0.0.1:5","to":"localhost:80"}"#,
            r#"{"time":"2025-10-22T15:32:47.300000Z","ConnID":"0000000A","data":"ok","from":"localhost:80","to":"127.0.0.1:5"}"#,
        ]
        .join("\n")
            + "\n";
        let mut file = Vec::new();
        let (stats, skipped) =
            write_pcap(&[Input::Bytes(log.into_bytes())], None, &mut file).unwrap();
        assert_eq!(skipped.count, 0);
        // SYN, SYN-ACK, ACK; data + ACK; FIN + ACK; data + ACK; FIN + ACK.
        assert_eq!(
            stats,
            PcapStats {
                connections: 1,
                packets: 11
            }
        );
        let kinds: Vec<u32> = blocks(&file).iter().map(|b| b.0).collect();
        assert_eq!(kinds[..3], [0x0A0D_0D0A, 1, 4]);
        assert_eq!(kinds[3..], [6; 11]);
        let packets: Vec<&[u8]> = blocks(&file)[3..].iter().map(|b| b.1).collect();
        let ip = |epb: &[u8]| {
            let len = u32::from_le_bytes(epb[12..16].try_into().unwrap()) as usize;
            epb[20..20 + len].to_vec()
        };
        let syn = ip(packets[0]);
        assert_eq!(&syn[16..20], &[198, 18, 0, 1], "the stand-in for localhost");
        assert_eq!(fold(sum_words(&syn[..20], 0)), 0xFFFF, "IP checksum");
        let last_fin = ip(packets[9]);
        assert_eq!(last_fin[20 + 13], FIN | ACK);
        assert_eq!(&last_fin[12..16], &[198, 18, 0, 1], "from the target");
        // The comment rides on the first packet only.
        let comment = b"ConnID 0000000A";
        assert!(packets[0].windows(comment.len()).any(|w| w == comment));
        assert!(!packets[1].windows(comment.len()).any(|w| w == comment));
    }
}
