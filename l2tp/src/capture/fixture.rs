//! Capture files built byte by byte for the tests: both byte orders, both precisions, every
//! pcapng block we read, independent of the writer under test.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::write::{build_ipv4_udp, push_link_header};
use super::Linktype;

/// A UDP datagram framed for `linktype`.
pub fn udp_frame(
    linktype: Linktype,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    assert!(
        push_link_header(linktype, &mut frame),
        "no framing for {linktype}"
    );
    build_ipv4_udp(src, dst, payload, 7, &mut frame).unwrap();
    frame
}

fn put_u16(out: &mut Vec<u8>, value: u16, big_endian: bool) {
    out.extend_from_slice(&if big_endian {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    });
}

fn put_u32(out: &mut Vec<u8>, value: u32, big_endian: bool) {
    out.extend_from_slice(&if big_endian {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    });
}

/// A classic pcap file.
pub struct Pcap {
    big_endian: bool,
    nanosecond: bool,
    pub bytes: Vec<u8>,
}

impl Pcap {
    pub fn new(big_endian: bool, nanosecond: bool, linktype: u32) -> Self {
        let mut bytes = Vec::new();
        let magic = if nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        put_u32(&mut bytes, magic, big_endian);
        put_u16(&mut bytes, 2, big_endian);
        put_u16(&mut bytes, 4, big_endian);
        put_u32(&mut bytes, 0, big_endian);
        put_u32(&mut bytes, 0, big_endian);
        put_u32(&mut bytes, 65_535, big_endian);
        put_u32(&mut bytes, linktype, big_endian);
        Pcap {
            big_endian,
            nanosecond,
            bytes,
        }
    }

    pub fn record(mut self, timestamp: Duration, frame: &[u8]) -> Self {
        self.record_cut(timestamp, frame, frame.len());
        self
    }

    /// Records only the first `captured` bytes, as a snaplen would.
    pub fn record_cut(&mut self, timestamp: Duration, frame: &[u8], captured: usize) {
        let be = self.big_endian;
        let fraction = if self.nanosecond {
            timestamp.subsec_nanos()
        } else {
            timestamp.subsec_micros()
        };
        put_u32(&mut self.bytes, timestamp.as_secs() as u32, be);
        put_u32(&mut self.bytes, fraction, be);
        put_u32(&mut self.bytes, captured as u32, be);
        put_u32(&mut self.bytes, frame.len() as u32, be);
        self.bytes.extend_from_slice(&frame[..captured]);
    }
}

/// A pcapng file, starting with its section header.
pub struct PcapNg {
    big_endian: bool,
    pub bytes: Vec<u8>,
}

impl PcapNg {
    pub fn new(big_endian: bool) -> Self {
        PcapNg {
            big_endian,
            bytes: Vec::new(),
        }
        .section(big_endian)
    }

    /// Starts a new section, possibly in the other byte order.
    pub fn section(mut self, big_endian: bool) -> Self {
        self.big_endian = big_endian;
        let mut body = Vec::new();
        put_u32(&mut body, 0x1a2b_3c4d, big_endian);
        put_u16(&mut body, 1, big_endian);
        put_u16(&mut body, 0, big_endian);
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0a0d_0d0a, &body)
    }

    pub fn interface(
        self,
        linktype: u16,
        snaplen: u32,
        tsresol: Option<u8>,
        tsoffset: Option<i64>,
    ) -> Self {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u16(&mut body, linktype, be);
        put_u16(&mut body, 0, be);
        put_u32(&mut body, snaplen, be);
        // An option we ignore first, to check that options are walked, not just peeked.
        put_u16(&mut body, 2, be); // if_name
        put_u16(&mut body, 3, be);
        body.extend_from_slice(b"et0\0");
        if let Some(resolution) = tsresol {
            put_u16(&mut body, 9, be);
            put_u16(&mut body, 1, be);
            body.extend_from_slice(&[resolution, 0, 0, 0]);
        }
        if let Some(offset) = tsoffset {
            put_u16(&mut body, 14, be);
            put_u16(&mut body, 8, be);
            let offset = offset as u64;
            if be {
                body.extend_from_slice(&offset.to_be_bytes());
            } else {
                body.extend_from_slice(&offset.to_le_bytes());
            }
        }
        put_u32(&mut body, 0, be); // opt_endofopt
        self.block(1, &body)
    }

    pub fn enhanced(self, interface: u32, ticks: u64, frame: &[u8]) -> Self {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u32(&mut body, interface, be);
        put_u32(&mut body, (ticks >> 32) as u32, be);
        put_u32(&mut body, ticks as u32, be);
        put_u32(&mut body, frame.len() as u32, be);
        put_u32(&mut body, frame.len() as u32, be);
        body.extend_from_slice(frame);
        pad(&mut body);
        // epb_flags: inbound. Options after the data must not disturb it.
        put_u16(&mut body, 2, be);
        put_u16(&mut body, 4, be);
        put_u32(&mut body, 1, be);
        put_u32(&mut body, 0, be);
        self.block(6, &body)
    }

    pub fn obsolete(self, interface: u16, ticks: u64, frame: &[u8]) -> Self {
        let be = self.big_endian;
        let mut body = Vec::new();
        put_u16(&mut body, interface, be);
        put_u16(&mut body, 0, be); // drops
        put_u32(&mut body, (ticks >> 32) as u32, be);
        put_u32(&mut body, ticks as u32, be);
        put_u32(&mut body, frame.len() as u32, be);
        put_u32(&mut body, frame.len() as u32, be);
        body.extend_from_slice(frame);
        self.block(2, &body)
    }

    pub fn simple(self, original_len: u32, frame: &[u8]) -> Self {
        let mut body = Vec::new();
        put_u32(&mut body, original_len, self.big_endian);
        body.extend_from_slice(frame);
        self.block(3, &body)
    }

    /// Any block; the body is padded to 32 bits.
    pub fn block(mut self, block_type: u32, body: &[u8]) -> Self {
        let be = self.big_endian;
        let len = (12 + body.len().next_multiple_of(4)) as u32;
        put_u32(&mut self.bytes, block_type, be);
        put_u32(&mut self.bytes, len, be);
        self.bytes.extend_from_slice(body);
        pad(&mut self.bytes);
        put_u32(&mut self.bytes, len, be);
        self
    }
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}
