//! Reading pcap and pcapng: the container framing, over one reusable buffer.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use super::{decode_frame, CaptureError, Linktype, Problem, Record};

/// Enough for many records per `read` call, so syscalls and compaction stay rare.
const INITIAL_BUFFER: usize = 256 * 1024;
/// Far above libpcap's 256 KiB snaplen; bounds what a corrupt length field can make us buffer.
const MAX_RECORD: usize = 16 * 1024 * 1024;

const PCAP_FILE_HEADER: usize = 24;
const PCAP_RECORD_HEADER: usize = 16;
/// libpcap keeps FCS flags in the upper bits of the linktype word.
const PCAP_LINKTYPE_MASK: u32 = 0x03ff_ffff;

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION: u32 = 1;
const OBSOLETE_PACKET: u32 = 2;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Type, length and trailing length around every pcapng block body.
const BLOCK_FRAMING: usize = 12;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// The container a [`CaptureReader`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap {
        big_endian: bool,
        nanosecond: bool,
        linktype: Linktype,
    },
    PcapNg,
}

/// Reads UDP datagrams from a pcap or pcapng capture, one [`Record`] at a time.
///
/// The reader buffers by itself; give it the bare file or stream, not a `BufReader`.
pub struct CaptureReader<R = File> {
    source: R,
    name: String,
    buf: Vec<u8>,
    /// `buf[start..end]` is read but not yet consumed.
    start: usize,
    end: usize,
    framing: Framing,
    /// Packet records returned so far.
    packets: u64,
    finished: bool,
}

enum Framing {
    Pcap {
        big_endian: bool,
        nanosecond: bool,
        linktype: Linktype,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// What a pcapng Interface Description Block says about the packets that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interface {
    linktype: Linktype,
    snaplen: u32,
    clock: Clock,
}

/// How to turn an interface's timestamp ticks into time since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    /// `if_tsresol`: ticks per second are 10^n, or 2^n when the top bit is set.
    resolution: u8,
    /// `if_tsoffset`, in seconds.
    offset: i64,
}

/// A packet found in the buffer, before the record borrows it.
struct Found {
    data: Range<usize>,
    timestamp: Duration,
    linktype: Linktype,
}

impl CaptureReader<File> {
    /// Opens a capture file; errors name it as `path` is written.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        match File::open(path) {
            Ok(file) => Self::new(file, name),
            Err(source) => Err(CaptureError::Io { file: name, source }),
        }
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header now, so a foreign file fails here rather than at the first record.
    /// `name` is what errors call the file.
    pub fn new(source: R, name: impl Into<String>) -> Result<Self, CaptureError> {
        let mut reader = CaptureReader {
            source,
            name: name.into(),
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            framing: Framing::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
            },
            packets: 0,
            finished: false,
        };
        reader.framing = reader.file_header()?;
        Ok(reader)
    }

    /// The name errors use for the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn format(&self) -> CaptureFormat {
        match self.framing {
            Framing::Pcap {
                big_endian,
                nanosecond,
                linktype,
            } => CaptureFormat::Pcap {
                big_endian,
                nanosecond,
                linktype,
            },
            Framing::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// The next packet record, `None` at the end of the file or after an error.
    ///
    /// The record borrows the reader's buffer, so it must be dropped before the next call.
    pub fn next_datagram(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        if self.finished {
            return None;
        }
        let next = match self.framing {
            Framing::Pcap {
                big_endian,
                nanosecond,
                linktype,
            } => self.next_pcap(big_endian, nanosecond, linktype),
            Framing::PcapNg { .. } => self.next_pcapng(),
        };
        match next {
            Ok(Some(found)) => {
                self.packets += 1;
                let frame = &self.buf[found.data];
                Some(Ok(Record {
                    index: self.packets,
                    timestamp: found.timestamp,
                    linktype: found.linktype,
                    kind: decode_frame(found.linktype, frame),
                }))
            }
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }

    fn file_header(&mut self) -> Result<Framing, CaptureError> {
        let left = self.fill(4)?;
        if left < 4 {
            return Err(CaptureError::TooShort {
                file: self.name.clone(),
                len: left,
            });
        }
        let magic = be32(&self.buf, self.start);
        let (big_endian, nanosecond) = match magic {
            0xa1b2_c3d4 => (true, false),
            0xa1b2_3c4d => (true, true),
            0xd4c3_b2a1 => (false, false),
            0x4d3c_b2a1 => (false, true),
            SECTION_HEADER => {
                // Checked here so that a text file starting with "\n\r\r\n" is called foreign;
                // the block itself is read by `next_pcapng` like any later section header.
                let left = self.fill(BLOCK_FRAMING)?;
                if left < BLOCK_FRAMING {
                    return Err(self.header_error(Problem::TruncatedHeader {
                        what: "pcapng section header",
                        need: BLOCK_FRAMING,
                        left,
                    }));
                }
                let order = be32(&self.buf, self.start + 8);
                return match section_byte_order(order) {
                    Some(big_endian) => Ok(Framing::PcapNg {
                        big_endian,
                        interfaces: Vec::new(),
                    }),
                    None => Err(self.header_error(Problem::BadByteOrder(order))),
                };
            }
            _ => {
                return Err(CaptureError::NotCapture {
                    file: self.name.clone(),
                    magic,
                })
            }
        };
        let left = self.fill(PCAP_FILE_HEADER)?;
        if left < PCAP_FILE_HEADER {
            return Err(self.header_error(Problem::TruncatedHeader {
                what: "pcap file header",
                need: PCAP_FILE_HEADER,
                left,
            }));
        }
        let linktype = u32_at(&self.buf, self.start + 20, big_endian) & PCAP_LINKTYPE_MASK;
        self.start += PCAP_FILE_HEADER;
        Ok(Framing::Pcap {
            big_endian,
            nanosecond,
            linktype: Linktype(linktype),
        })
    }

    fn next_pcap(
        &mut self,
        big_endian: bool,
        nanosecond: bool,
        linktype: Linktype,
    ) -> Result<Option<Found>, CaptureError> {
        let left = self.fill(PCAP_RECORD_HEADER)?;
        if left == 0 {
            return Ok(None);
        }
        if left < PCAP_RECORD_HEADER {
            return Err(self.record_error(Problem::TruncatedHeader {
                what: "record header",
                need: PCAP_RECORD_HEADER,
                left,
            }));
        }
        let seconds = u32_at(&self.buf, self.start, big_endian);
        let fraction = u32_at(&self.buf, self.start + 4, big_endian);
        let captured = u32_at(&self.buf, self.start + 8, big_endian);
        // The original length is ignored: it exceeds `captured` whenever a snaplen cut the packet.
        let captured_len = captured as usize;
        if captured_len > MAX_RECORD {
            return Err(self.record_error(Problem::TooLarge {
                what: "record",
                len: u64::from(captured),
                limit: MAX_RECORD,
            }));
        }
        let need = PCAP_RECORD_HEADER + captured_len;
        let left = self.fill(need)?;
        if left < need {
            return Err(self.record_error(Problem::TruncatedRecord {
                declared: u64::from(captured),
                left: left - PCAP_RECORD_HEADER,
            }));
        }
        // Lenient like libpcap: a fraction past one second just carries into the seconds.
        let fraction = if nanosecond {
            Duration::from_nanos(u64::from(fraction))
        } else {
            Duration::from_micros(u64::from(fraction))
        };
        let data = self.start + PCAP_RECORD_HEADER..self.start + need;
        self.start += need;
        Ok(Some(Found {
            data,
            timestamp: Duration::from_secs(u64::from(seconds)) + fraction,
            linktype,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Found>, CaptureError> {
        loop {
            let left = self.fill(BLOCK_FRAMING)?;
            if left == 0 {
                return Ok(None);
            }
            if left < BLOCK_FRAMING {
                return Err(self.record_error(Problem::TruncatedHeader {
                    what: "block header",
                    need: BLOCK_FRAMING,
                    left,
                }));
            }
            let at = self.start;
            // The section header's type reads the same in both orders; its byte-order magic
            // then says how to read everything up to the next section header.
            let big_endian = if be32(&self.buf, at) == SECTION_HEADER {
                let order = be32(&self.buf, at + 8);
                match section_byte_order(order) {
                    Some(big_endian) => big_endian,
                    None => return Err(self.record_error(Problem::BadByteOrder(order))),
                }
            } else {
                self.section_big_endian()
            };
            let block_type = u32_at(&self.buf, at, big_endian);
            let len = u32_at(&self.buf, at + 4, big_endian);
            let min = BLOCK_FRAMING as u32 + min_body(block_type);
            if len & 3 != 0 || len < min {
                return Err(self.record_error(Problem::BadBlockLength {
                    block_type,
                    len,
                    min,
                }));
            }
            let block_len = len as usize;
            if block_len > MAX_RECORD {
                return Err(self.record_error(Problem::TooLarge {
                    what: "block",
                    len: u64::from(len),
                    limit: MAX_RECORD,
                }));
            }
            let left = self.fill(block_len)?;
            if left < block_len {
                return Err(self.record_error(Problem::TruncatedRecord {
                    declared: u64::from(len),
                    left,
                }));
            }
            // Filling may have moved the unread bytes to the front of the buffer.
            let at = self.start;
            let trailer = u32_at(&self.buf, at + block_len - 4, big_endian);
            if trailer != len {
                return Err(self.record_error(Problem::TrailerMismatch {
                    block_type,
                    len,
                    trailer,
                }));
            }
            let body = at + 8..at + block_len - 4;
            self.start += block_len;
            match block_type {
                SECTION_HEADER => self.section_header(body, big_endian)?,
                INTERFACE_DESCRIPTION => self.interface_description(body, big_endian),
                ENHANCED_PACKET => return self.enhanced_packet(body, big_endian).map(Some),
                OBSOLETE_PACKET => return self.obsolete_packet(body, big_endian).map(Some),
                SIMPLE_PACKET => return self.simple_packet(body, big_endian).map(Some),
                // Statistics, name resolution, secrets, custom: nothing for us.
                _ => {}
            }
        }
    }

    fn section_big_endian(&self) -> bool {
        match self.framing {
            Framing::PcapNg { big_endian, .. } => big_endian,
            Framing::Pcap { big_endian, .. } => big_endian,
        }
    }

    fn section_header(&mut self, body: Range<usize>, big_endian: bool) -> Result<(), CaptureError> {
        let major = u16_at(&self.buf, body.start + 4, big_endian);
        let minor = u16_at(&self.buf, body.start + 6, big_endian);
        if major != 1 {
            return Err(self.record_error(Problem::UnsupportedVersion { major, minor }));
        }
        // Interface ids restart at zero in every section.
        self.framing = Framing::PcapNg {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn interface_description(&mut self, body: Range<usize>, big_endian: bool) {
        let body = &self.buf[body];
        let mut interface = Interface {
            linktype: Linktype(u32::from(u16_at(body, 0, big_endian))),
            snaplen: u32_at(body, 4, big_endian),
            clock: Clock {
                resolution: 6,
                offset: 0,
            },
        };
        // Options are read leniently: a malformed one ends the list instead of the file.
        let mut options = &body[8..];
        while options.len() >= 4 {
            let code = u16_at(options, 0, big_endian);
            let len = usize::from(u16_at(options, 2, big_endian));
            let Some(value) = options.get(4..4 + len) else {
                break;
            };
            match (code, len) {
                (OPT_END, _) => break,
                (OPT_IF_TSRESOL, 1) => interface.clock.resolution = value[0],
                (OPT_IF_TSOFFSET, 8) => {
                    interface.clock.offset = u64_at(value, 0, big_endian) as i64;
                }
                _ => {}
            }
            options = options
                .get(4 + len.next_multiple_of(4)..)
                .unwrap_or_default();
        }
        if let Framing::PcapNg { interfaces, .. } = &mut self.framing {
            interfaces.push(interface);
        }
    }

    fn enhanced_packet(
        &mut self,
        body: Range<usize>,
        big_endian: bool,
    ) -> Result<Found, CaptureError> {
        let at = body.start;
        let interface = self.interface(u32_at(&self.buf, at, big_endian))?;
        let ticks = u64::from(u32_at(&self.buf, at + 4, big_endian)) << 32
            | u64::from(u32_at(&self.buf, at + 8, big_endian));
        let captured = u32_at(&self.buf, at + 12, big_endian);
        let data = self.packet_data(body, 20, captured, "enhanced packet block")?;
        Ok(Found {
            data,
            timestamp: interface.clock.timestamp(ticks),
            linktype: interface.linktype,
        })
    }

    /// The Packet Block that pcapng 1.0 had before the Enhanced one; old files still hold it.
    fn obsolete_packet(
        &mut self,
        body: Range<usize>,
        big_endian: bool,
    ) -> Result<Found, CaptureError> {
        let at = body.start;
        let interface = self.interface(u32::from(u16_at(&self.buf, at, big_endian)))?;
        let ticks = u64::from(u32_at(&self.buf, at + 4, big_endian)) << 32
            | u64::from(u32_at(&self.buf, at + 8, big_endian));
        let captured = u32_at(&self.buf, at + 12, big_endian);
        let data = self.packet_data(body, 20, captured, "packet block")?;
        Ok(Found {
            data,
            timestamp: interface.clock.timestamp(ticks),
            linktype: interface.linktype,
        })
    }

    /// A Simple Packet Block has no timestamp and no captured length: the data is the
    /// original length cut to the snaplen of interface 0, and never runs past the block.
    fn simple_packet(
        &mut self,
        body: Range<usize>,
        big_endian: bool,
    ) -> Result<Found, CaptureError> {
        let interface = self.interface(0)?;
        let original = u32_at(&self.buf, body.start, big_endian) as usize;
        let mut captured = original.min(body.len() - 4);
        if interface.snaplen != 0 {
            captured = captured.min(interface.snaplen as usize);
        }
        let start = body.start + 4;
        Ok(Found {
            data: start..start + captured,
            timestamp: Duration::ZERO,
            linktype: interface.linktype,
        })
    }

    fn interface(&self, id: u32) -> Result<Interface, CaptureError> {
        let interfaces = match &self.framing {
            Framing::PcapNg { interfaces, .. } => interfaces.as_slice(),
            Framing::Pcap { .. } => &[],
        };
        match interfaces.get(id as usize) {
            Some(interface) => Ok(*interface),
            None => Err(self.record_error(Problem::UnknownInterface {
                interface: id,
                known: interfaces.len(),
            })),
        }
    }

    fn packet_data(
        &self,
        body: Range<usize>,
        fixed: usize,
        captured: u32,
        what: &'static str,
    ) -> Result<Range<usize>, CaptureError> {
        let room = body.len() - fixed;
        if captured as usize > room {
            return Err(self.record_error(Problem::CapturedBeyondBlock {
                what,
                captured,
                room,
            }));
        }
        let start = body.start + fixed;
        Ok(start..start + captured as usize)
    }

    /// Makes at least `need` unconsumed bytes available unless the source ends first, and says
    /// how many there are.
    #[inline]
    fn fill(&mut self, need: usize) -> Result<usize, CaptureError> {
        let left = self.end - self.start;
        if left >= need {
            return Ok(left);
        }
        self.fill_more(need).map_err(|source| CaptureError::Io {
            file: self.name.clone(),
            source,
        })
    }

    #[cold]
    fn fill_more(&mut self, need: usize) -> io::Result<usize> {
        while self.end - self.start < need {
            if self.start + need > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Grow by doubling as data arrives, so a lying length field costs at most
                // twice the bytes the file really has.
                let len = need.min(self.buf.len() * 2);
                self.buf.resize(len, 0);
            }
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.start)
    }

    fn header_error(&self, problem: Problem) -> CaptureError {
        CaptureError::Header {
            file: self.name.clone(),
            problem,
        }
    }

    fn record_error(&self, problem: Problem) -> CaptureError {
        CaptureError::Record {
            file: self.name.clone(),
            record: self.packets + 1,
            problem,
        }
    }
}

impl Clock {
    fn timestamp(self, ticks: u64) -> Duration {
        let since_epoch = if self.resolution & 0x80 == 0 {
            decimal_ticks(ticks, u32::from(self.resolution))
        } else {
            binary_ticks(ticks, u32::from(self.resolution & 0x7f))
        };
        let offset = Duration::from_secs(self.offset.unsigned_abs());
        let shifted = if self.offset >= 0 {
            since_epoch.checked_add(offset)
        } else {
            since_epoch.checked_sub(offset)
        };
        shifted.unwrap_or(since_epoch)
    }
}

/// `ticks` of 10^-`exp` seconds.
fn decimal_ticks(ticks: u64, exp: u32) -> Duration {
    if exp <= 9 {
        // The common case (micro- and nanoseconds) stays in u64 arithmetic.
        let per_second = 10u64.pow(exp);
        let nanos = (ticks % per_second) * 10u64.pow(9 - exp);
        Duration::new(ticks / per_second, nanos as u32)
    } else if exp <= 38 {
        let per_second = 10u128.pow(exp);
        let ticks = u128::from(ticks);
        let nanos = ticks % per_second * 1_000_000_000 / per_second;
        Duration::new((ticks / per_second) as u64, nanos as u32)
    } else {
        // Under a second for any 64-bit tick count, and far finer than a nanosecond.
        Duration::ZERO
    }
}

/// `ticks` of 2^-`exp` seconds (`exp` < 128).
fn binary_ticks(ticks: u64, exp: u32) -> Duration {
    let ticks = u128::from(ticks);
    let seconds = ticks >> exp;
    let fraction = ticks - (seconds << exp);
    let nanos = (fraction * 1_000_000_000) >> exp;
    Duration::new(seconds as u64, nanos as u32)
}

fn section_byte_order(magic_as_big_endian: u32) -> Option<bool> {
    match magic_as_big_endian {
        BYTE_ORDER_MAGIC => Some(true),
        m if m.swap_bytes() == BYTE_ORDER_MAGIC => Some(false),
        _ => None,
    }
}

/// The fixed part of each block body we read, checked before any field is.
fn min_body(block_type: u32) -> u32 {
    match block_type {
        SECTION_HEADER => 16,
        INTERFACE_DESCRIPTION => 8,
        ENHANCED_PACKET | OBSOLETE_PACKET => 20,
        SIMPLE_PACKET => 4,
        _ => 0,
    }
}

// Callers have checked the length, so these index within the buffer.
fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u16_at(buf: &[u8], at: usize, big_endian: bool) -> u16 {
    let bytes = [buf[at], buf[at + 1]];
    if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

fn u32_at(buf: &[u8], at: usize, big_endian: bool) -> u32 {
    let bytes = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

fn u64_at(buf: &[u8], at: usize, big_endian: bool) -> u64 {
    let first = u64::from(u32_at(buf, at, big_endian));
    let second = u64::from(u32_at(buf, at + 4, big_endian));
    if big_endian {
        first << 32 | second
    } else {
        second << 32 | first
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use proptest::prelude::*;

    use super::super::fixture::{udp_frame, Pcap, PcapNg};
    use super::super::{RecordKind, UdpDatagram};
    use super::*;

    const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 1701);
    const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 1701);
    const SCCRQ: &[u8] = &[
        0xc8, 0x02, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    const LINKTYPES: [Linktype; 7] = [
        Linktype::NULL,
        Linktype::ETHERNET,
        Linktype::RAW,
        Linktype::LOOP,
        Linktype::LINUX_SLL,
        Linktype::IPV4,
        Linktype::LINUX_SLL2,
    ];

    /// A record with its borrow released, for comparing whole files.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        index: u64,
        timestamp: Duration,
        linktype: Linktype,
        kind: String,
        payload: Vec<u8>,
    }

    fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<CaptureError>) {
        match CaptureReader::new(bytes, "test.pcap") {
            Ok(reader) => drain(reader),
            Err(e) => (Vec::new(), Some(e)),
        }
    }

    fn drain<R: Read>(mut reader: CaptureReader<R>) -> (Vec<Owned>, Option<CaptureError>) {
        let mut records = Vec::new();
        while let Some(next) = reader.next_datagram() {
            match next {
                Ok(record) => records.push(Owned {
                    index: record.index,
                    timestamp: record.timestamp,
                    linktype: record.linktype,
                    kind: format!("{:?}", record.kind),
                    payload: match record.kind {
                        RecordKind::Udp(udp) => udp.payload.to_vec(),
                        _ => Vec::new(),
                    },
                }),
                Err(e) => {
                    assert!(
                        reader.next_datagram().is_none(),
                        "reading went on after {e}"
                    );
                    return (records, Some(e));
                }
            }
        }
        (records, None)
    }

    fn read_ok(bytes: &[u8]) -> Vec<Owned> {
        let (records, error) = read_all(bytes);
        if let Some(e) = error {
            panic!("{e}");
        }
        records
    }

    fn udp_kind(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> String {
        format!("{:?}", RecordKind::Udp(UdpDatagram { src, dst, payload }))
    }

    fn error_text(bytes: &[u8]) -> String {
        match read_all(bytes).1 {
            Some(e) => e.to_string(),
            None => panic!("no error"),
        }
    }

    #[test]
    fn pcap_every_linktype_byte_order_and_precision() {
        let t1 = Duration::new(1_700_000_000, 123_456_789);
        let t2 = Duration::new(1_700_000_001, 999_999_999);
        for linktype in LINKTYPES {
            for big_endian in [false, true] {
                for nanosecond in [false, true] {
                    let file = Pcap::new(big_endian, nanosecond, linktype.0)
                        .record(t1, &udp_frame(linktype, LAC, LNS, SCCRQ))
                        .record(t2, &udp_frame(linktype, LNS, LAC, b"SCCRP"));
                    let records = read_ok(&file.bytes);
                    let precision = |t: Duration| {
                        if nanosecond {
                            t
                        } else {
                            Duration::new(t.as_secs(), t.subsec_micros() * 1000)
                        }
                    };
                    let case = format!("{linktype} big_endian={big_endian} nano={nanosecond}");
                    assert_eq!(records.len(), 2, "{case}");
                    assert_eq!(records[0].index, 1, "{case}");
                    assert_eq!(records[1].index, 2, "{case}");
                    assert_eq!(records[0].timestamp, precision(t1), "{case}");
                    assert_eq!(records[1].timestamp, precision(t2), "{case}");
                    assert_eq!(records[0].linktype, linktype, "{case}");
                    assert_eq!(records[0].kind, udp_kind(LAC, LNS, SCCRQ), "{case}");
                    assert_eq!(records[1].kind, udp_kind(LNS, LAC, b"SCCRP"), "{case}");
                    let mut reader = CaptureReader::new(&file.bytes[..], "x").unwrap();
                    assert_eq!(
                        reader.format(),
                        CaptureFormat::Pcap {
                            big_endian,
                            nanosecond,
                            linktype
                        }
                    );
                    assert!(reader.next_datagram().is_some());
                }
            }
        }
    }

    #[test]
    fn pcapng_every_linktype_and_byte_order() {
        for linktype in LINKTYPES {
            for big_endian in [false, true] {
                // Default resolution: microseconds.
                let simple = udp_frame(linktype, LAC, LNS, b"hello");
                let file = PcapNg::new(big_endian)
                    .interface(linktype.0 as u16, 0, None, None)
                    .enhanced(
                        0,
                        1_700_000_000_654_321,
                        &udp_frame(linktype, LAC, LNS, SCCRQ),
                    )
                    .obsolete(
                        0,
                        1_700_000_001_000_001,
                        &udp_frame(linktype, LNS, LAC, b"ZLB"),
                    )
                    .simple(simple.len() as u32, &simple);
                let records = read_ok(&file.bytes);
                let case = format!("{linktype} big_endian={big_endian}");
                assert_eq!(records.len(), 3, "{case}");
                assert_eq!(
                    records[0].timestamp,
                    Duration::new(1_700_000_000, 654_321_000)
                );
                assert_eq!(records[0].kind, udp_kind(LAC, LNS, SCCRQ), "{case}");
                assert_eq!(records[1].timestamp, Duration::new(1_700_000_001, 1_000));
                assert_eq!(records[1].kind, udp_kind(LNS, LAC, b"ZLB"), "{case}");
                assert_eq!(records[2].timestamp, Duration::ZERO);
                assert_eq!(records[2].kind, udp_kind(LAC, LNS, b"hello"), "{case}");
                assert_eq!(
                    records.iter().map(|r| r.index).collect::<Vec<_>>(),
                    [1, 2, 3]
                );
                assert!(records.iter().all(|r| r.linktype == linktype), "{case}");
            }
        }
    }

    #[test]
    fn pcapng_interfaces_resolutions_offsets_and_sections() {
        let ethernet = udp_frame(Linktype::ETHERNET, LAC, LNS, b"eth");
        let raw = udp_frame(Linktype::RAW, LNS, LAC, b"raw");
        let sll2 = udp_frame(Linktype::LINUX_SLL2, LAC, LNS, b"sll2");
        let file = PcapNg::new(false)
            .interface(1, 65_535, Some(9), None)
            .block(4, &[0; 8]) // name resolution: skipped
            .interface(101, 65_535, Some(0x80 | 20), Some(-100))
            .block(0x0000_0bad, b"custom") // custom block: skipped
            .enhanced(0, 1_700_000_000_000_000_042, &ethernet)
            .enhanced(1, (1_700_000_100u64 << 20) | (1 << 19), &raw)
            .block(5, &[0; 16]) // interface statistics: skipped
            // A new section forgets the interfaces and may change byte order.
            .section(true)
            .interface(276, 0, Some(3), Some(7))
            .enhanced(0, 1_700_000_000_005, &sll2);
        let records = read_ok(&file.bytes);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].linktype, Linktype::ETHERNET);
        assert_eq!(records[0].timestamp, Duration::new(1_700_000_000, 42));
        assert_eq!(records[0].kind, udp_kind(LAC, LNS, b"eth"));
        assert_eq!(records[1].linktype, Linktype::RAW);
        assert_eq!(
            records[1].timestamp,
            Duration::new(1_700_000_000, 500_000_000)
        );
        assert_eq!(records[1].kind, udp_kind(LNS, LAC, b"raw"));
        assert_eq!(records[2].linktype, Linktype::LINUX_SLL2);
        assert_eq!(
            records[2].timestamp,
            Duration::new(1_700_000_007, 5_000_000)
        );
        assert_eq!(records[2].kind, udp_kind(LAC, LNS, b"sll2"));
        assert_eq!(records[2].index, 3);
    }

    #[test]
    fn simple_packet_is_cut_to_the_snaplen() {
        let frame = udp_frame(Linktype::RAW, LAC, LNS, &[0xaa; 100]);
        let file = PcapNg::new(false)
            .interface(101, 64, None, None)
            .simple(frame.len() as u32, &frame);
        let records = read_ok(&file.bytes);
        assert_eq!(records[0].kind, r#"Other("truncated IPv4")"#);
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(decimal_ticks(1_500_000, 6), Duration::new(1, 500_000_000));
        assert_eq!(decimal_ticks(7, 0), Duration::from_secs(7));
        assert_eq!(decimal_ticks(3_000_000_000_005, 12), Duration::new(3, 0));
        assert_eq!(decimal_ticks(3_000_000_005_000, 12), Duration::new(3, 5));
        assert_eq!(decimal_ticks(u64::MAX, 127), Duration::ZERO);
        assert_eq!(decimal_ticks(u64::MAX, 38), Duration::ZERO);
        assert_eq!(
            binary_ticks(3 << 10 | 1 << 9, 10),
            Duration::new(3, 500_000_000)
        );
        assert_eq!(binary_ticks(u64::MAX, 0), Duration::from_secs(u64::MAX));
        assert_eq!(binary_ticks(1 << 63, 64), Duration::new(0, 500_000_000));
        assert_eq!(binary_ticks(u64::MAX, 127), Duration::ZERO);
        let clock = |offset| Clock {
            resolution: 9,
            offset,
        };
        assert_eq!(clock(-5).timestamp(7_000_000_000), Duration::from_secs(2));
        assert_eq!(clock(-9).timestamp(7_000_000_000), Duration::from_secs(7));
        assert_eq!(clock(i64::MIN).timestamp(1), Duration::from_nanos(1));
        assert_eq!(
            clock(i64::MAX).timestamp(1),
            Duration::new(i64::MAX as u64, 1)
        );
        // Every resolution and tick count maps without panicking.
        for resolution in 0..=255u8 {
            for ticks in [0, 1, 999_999_999, 1 << 40, u64::MAX] {
                Clock {
                    resolution,
                    offset: i64::MAX,
                }
                .timestamp(ticks);
            }
        }
    }

    #[test]
    fn pcap_fraction_past_a_second_carries() {
        let frame = udp_frame(Linktype::RAW, LAC, LNS, b"x");
        let mut file = Pcap::new(false, false, 101);
        file.record_cut(Duration::from_secs(10), &frame, frame.len());
        file.bytes[28..32].copy_from_slice(&2_500_000u32.to_le_bytes());
        assert_eq!(
            read_ok(&file.bytes)[0].timestamp,
            Duration::new(12, 500_000_000)
        );
    }

    #[test]
    fn upper_linktype_bits_are_fcs_flags() {
        let frame = udp_frame(Linktype::ETHERNET, LAC, LNS, b"fcs");
        let mut with_fcs = frame.clone();
        with_fcs.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let file = Pcap::new(false, false, 1 | 1 << 26 | 4 << 28).record(Duration::ZERO, &with_fcs);
        let records = read_ok(&file.bytes);
        assert_eq!(records[0].linktype, Linktype::ETHERNET);
        assert_eq!(records[0].kind, udp_kind(LAC, LNS, b"fcs"));
    }

    #[test]
    fn unknown_linktype_is_a_record_not_an_error() {
        let file = Pcap::new(false, false, 147).record(Duration::ZERO, b"whatever");
        let records = read_ok(&file.bytes);
        assert_eq!(records[0].linktype, Linktype(147));
        assert_eq!(records[0].kind, r#"Other("unsupported linktype")"#);
        assert_eq!(Linktype(147).to_string(), "linktype 147");
        assert_eq!(Linktype::LINUX_SLL2.to_string(), "Linux SLL2 (276)");
    }

    #[test]
    fn records_larger_than_the_buffer() {
        let big = vec![0x5a; INITIAL_BUFFER * 2 + 3];
        let small = udp_frame(Linktype::RAW, LAC, LNS, b"after");
        let file = Pcap::new(false, false, 101)
            .record(Duration::ZERO, &small)
            .record(Duration::ZERO, &big)
            .record(Duration::ZERO, &small);
        let records = read_ok(&file.bytes);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].kind, r#"Other("not IPv4")"#);
        assert_eq!(records[2].kind, udp_kind(LAC, LNS, b"after"));
    }

    /// Hands out at most `chunk` bytes per read, with an interruption before each.
    struct Trickle<'a> {
        bytes: &'a [u8],
        chunk: usize,
        interrupt: bool,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.chunk).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_and_interruptions_change_nothing() {
        let file = PcapNg::new(true)
            .interface(1, 0, None, None)
            .enhanced(0, 5, &udp_frame(Linktype::ETHERNET, LAC, LNS, SCCRQ))
            .enhanced(0, 6, &udp_frame(Linktype::ETHERNET, LNS, LAC, b"SCCRP"));
        let whole = read_ok(&file.bytes);
        for chunk in [1, 3, 7, 64] {
            let trickle = Trickle {
                bytes: &file.bytes,
                chunk,
                interrupt: false,
            };
            let (records, error) = drain(CaptureReader::new(trickle, "t").unwrap());
            assert!(error.is_none());
            assert_eq!(records, whole);
        }
    }

    /// Enough records of varied sizes that blocks straddle every refill and compaction.
    #[test]
    fn files_larger_than_the_buffer() {
        let frames: Vec<Vec<u8>> = (0..3000)
            .map(|i| udp_frame(Linktype::ETHERNET, LAC, LNS, &vec![i as u8; i % 377]))
            .collect();
        let mut pcap = Pcap::new(false, true, 1);
        let mut pcapng = PcapNg::new(true).interface(1, 0, Some(9), None);
        for (i, frame) in frames.iter().enumerate() {
            pcap = pcap.record(Duration::from_nanos(i as u64), frame);
            pcapng = pcapng.enhanced(0, i as u64, frame);
        }
        for file in [pcap.bytes, pcapng.bytes] {
            assert!(file.len() > 2 * INITIAL_BUFFER);
            for chunk in [usize::MAX, 4093] {
                let trickle = Trickle {
                    bytes: &file,
                    chunk,
                    interrupt: false,
                };
                let (records, error) = drain(CaptureReader::new(trickle, "big").unwrap());
                assert!(error.is_none(), "{error:?}");
                assert_eq!(records.len(), frames.len());
                for (i, record) in records.iter().enumerate() {
                    assert_eq!(record.index, i as u64 + 1);
                    assert_eq!(record.timestamp, Duration::from_nanos(i as u64));
                    assert_eq!(record.payload, vec![i as u8; i % 377]);
                }
            }
        }
    }

    #[test]
    fn errors_name_the_file_and_the_record() {
        assert_eq!(
            error_text(b"hello, world\n"),
            "test.pcap: not a pcap or pcapng file (magic 0x68656c6c)"
        );
        assert_eq!(
            error_text(b"ab"),
            "test.pcap: not a pcap or pcapng file (only 2 bytes)"
        );
        assert_eq!(
            error_text(&Pcap::new(false, false, 1).bytes[..20]),
            "test.pcap: file header: truncated pcap file header (needs 24 bytes, 20 left)"
        );
        assert_eq!(
            error_text(b"\n\r\r\nthis is text"),
            "test.pcap: file header: pcapng section header: byte-order magic 0x20697320 \
             is neither 0x1a2b3c4d nor swapped"
        );

        let frame = udp_frame(Linktype::RAW, LAC, LNS, &[0; 62]);
        assert_eq!(frame.len(), 90);
        let file = Pcap::new(false, false, 101)
            .record(Duration::ZERO, &frame)
            .record(Duration::ZERO, &frame);
        let cut = &file.bytes[..file.bytes.len() - 50];
        let (records, error) = read_all(cut);
        assert_eq!(records.len(), 1);
        assert_eq!(
            error.unwrap().to_string(),
            "test.pcap: record 2: truncated record (header says 90 bytes, 40 left)"
        );
        assert_eq!(
            error_text(&file.bytes[..24 + 16 + 90 + 5]),
            "test.pcap: record 2: truncated record header (needs 16 bytes, 5 left)"
        );

        let mut huge = Pcap::new(true, false, 101).bytes;
        huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0x7f, 0, 0, 0]);
        assert_eq!(
            error_text(&huge),
            "test.pcap: record 1: record of 2130706432 bytes exceeds the 16777216-byte limit"
        );

        let epb = PcapNg::new(false)
            .interface(1, 0, None, None)
            .enhanced(3, 0, &frame);
        assert_eq!(
            error_text(&epb.bytes),
            "test.pcap: record 1: packet on interface 3, but only 1 interfaces are described"
        );
        let mut bad_trailer = PcapNg::new(false).bytes;
        let last = bad_trailer.len() - 4;
        bad_trailer[last] ^= 4;
        assert_eq!(
            error_text(&bad_trailer),
            "test.pcap: record 1: block type 0x0a0d0d0a: trailing length 24 differs from 28"
        );
        let odd = PcapNg::new(false).block(0x0bad, &[]);
        let mut odd = odd.bytes;
        odd[32..36].copy_from_slice(&13u32.to_le_bytes());
        assert_eq!(
            error_text(&odd),
            "test.pcap: record 1: block type 0x00000bad: length 13 is not a multiple of 4 \
             of at least 12"
        );
        let mut version2 = PcapNg::new(true).bytes;
        version2[13] = 2;
        assert_eq!(
            error_text(&version2),
            "test.pcap: record 1: pcapng version 2.0 is not supported (only 1.x)"
        );
        let mut beyond = PcapNg::new(false)
            .interface(101, 0, None, None)
            .enhanced(0, 0, &frame)
            .bytes;
        // The block is 136 bytes: 8 framing, 20 fixed, 92 data, 12 options, 4 trailer; the
        // captured length sits at byte 20.
        let at = beyond.len() - 136 + 20;
        beyond[at..at + 4].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(
            error_text(&beyond),
            "test.pcap: record 1: enhanced packet block says 500 captured bytes, the block \
             holds 104"
        );

        let missing = CaptureReader::open("/nonexistent/dir/capture.pcap")
            .err()
            .unwrap();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent/dir/capture.pcap: "),
            "{missing}"
        );
    }

    #[test]
    fn empty_capture_has_no_records() {
        assert!(read_ok(&Pcap::new(false, true, 1).bytes).is_empty());
        assert!(read_ok(&PcapNg::new(true).bytes).is_empty());
    }

    fn sample_pcap() -> Vec<u8> {
        Pcap::new(true, true, 1)
            .record(
                Duration::new(1, 2),
                &udp_frame(Linktype::ETHERNET, LAC, LNS, SCCRQ),
            )
            .record(
                Duration::new(3, 4),
                &udp_frame(Linktype::ETHERNET, LNS, LAC, b"SCCRP"),
            )
            .record(
                Duration::new(5, 6),
                &udp_frame(Linktype::ETHERNET, LAC, LNS, b""),
            )
            .bytes
    }

    fn sample_pcapng() -> Vec<u8> {
        PcapNg::new(false)
            .interface(113, 0, Some(9), None)
            .enhanced(0, 1, &udp_frame(Linktype::LINUX_SLL, LAC, LNS, SCCRQ))
            .block(5, &[0; 12])
            .interface(101, 0, None, None)
            .enhanced(1, 2, &udp_frame(Linktype::RAW, LNS, LAC, b"SCCRP"))
            .simple(60, &udp_frame(Linktype::LINUX_SLL, LAC, LNS, b""))
            .bytes
    }

    /// Every prefix reads as the records it holds whole, then ends cleanly or with an error
    /// that names the next record.
    #[test]
    fn truncated_at_every_byte() {
        for file in [sample_pcap(), sample_pcapng()] {
            let whole = read_ok(&file);
            for cut in 0..file.len() {
                let (records, error) = read_all(&file[..cut]);
                assert_eq!(records[..], whole[..records.len()], "cut at {cut}");
                match error {
                    None => assert!(records.len() < whole.len(), "cut at {cut}"),
                    Some(CaptureError::Record { record, .. }) => {
                        assert_eq!(record, records.len() as u64 + 1, "cut at {cut}")
                    }
                    Some(CaptureError::Header { .. } | CaptureError::TooShort { .. }) => {
                        assert!(records.is_empty())
                    }
                    Some(e) => panic!("cut at {cut}: {e}"),
                }
            }
        }
    }

    fn magic_prefix() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![]),
            Just(vec![0xd4, 0xc3, 0xb2, 0xa1]),
            Just(vec![0xa1, 0xb2, 0x3c, 0x4d]),
            Just(vec![
                0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a
            ]),
            Just(vec![
                0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0x1c, 0x1a, 0x2b, 0x3c, 0x4d
            ]),
        ]
    }

    fn check_any(bytes: &[u8]) {
        let (records, error) = read_all(bytes);
        // Every record takes at least 12 bytes of file.
        assert!(records.len() <= bytes.len() / 12);
        if let Some(CaptureError::Record { record, .. }) = error {
            assert_eq!(record, records.len() as u64 + 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_bytes_never_panic(
            prefix in magic_prefix(),
            rest in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut bytes = prefix;
            bytes.extend_from_slice(&rest);
            check_any(&bytes);
        }

        #[test]
        fn mutated_captures_never_panic(
            pcapng in any::<bool>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = if pcapng { sample_pcapng() } else { sample_pcap() };
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let len = bytes.len();
            bytes.truncate(len - cut.index(len / 4));
            check_any(&bytes);
        }
    }
}
