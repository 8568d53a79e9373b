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
mod tests;
