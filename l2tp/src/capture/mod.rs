//! Packet captures: read pcap / pcapng into UDP datagrams, write UDP datagrams as pcap.
//!
//! Reading is a lending iterator ([`CaptureReader::next_datagram`]): each [`Record`] borrows the
//! reader's buffer, so the hot path allocates nothing. Both container formats are framed here
//! rather than through `pcap-file` 2.0.0, whose readers reject every record a snaplen cut
//! (`orig_len > snaplen`) and then repeat that error forever, read every pcapng timestamp as
//! nanoseconds whatever the interface's `if_tsresol` (microsecond files come out 1000 times
//! too early), and allocate per block that has options. Writing is classic pcap, two fixed
//! headers; `pcap-file`'s writer cannot flush without giving up its writer.
//!
//! Every frame is classified once ([`decode_frame`]): a whole UDP datagram, an IPv4 fragment
//! of one, or something else, named. Malformed packets are records, never errors; only a
//! broken container (bad magic, truncated or inconsistent framing, I/O) is an error, and it ends
//! the reading.

mod frame;
mod read;
mod write;

#[cfg(test)]
mod fixture;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

pub use frame::decode_frame;
pub use read::{CaptureFormat, CaptureReader};
pub use write::{build_ipv4_udp, CaptureWriter, PayloadTooLarge};

/// A link-layer header type, as numbered by tcpdump.org's LINKTYPE_ registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Linktype(pub u32);

impl Linktype {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: Linktype = Linktype(0);
    pub const ETHERNET: Linktype = Linktype(1);
    /// Bare IP: the version nibble tells IPv4 from IPv6.
    pub const RAW: Linktype = Linktype(101);
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: Linktype = Linktype(108);
    pub const LINUX_SLL: Linktype = Linktype(113);
    pub const IPV4: Linktype = Linktype(228);
    pub const LINUX_SLL2: Linktype = Linktype(276);

    /// Every linktype this module decodes (and so can write and read back).
    pub const SUPPORTED: [Linktype; 7] = [
        Linktype::NULL,
        Linktype::ETHERNET,
        Linktype::RAW,
        Linktype::LOOP,
        Linktype::LINUX_SLL,
        Linktype::IPV4,
        Linktype::LINUX_SLL2,
    ];

    /// A short name, or `None` for a linktype this module cannot decode.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Linktype::NULL => "NULL",
            Linktype::ETHERNET => "Ethernet",
            Linktype::RAW => "RAW",
            Linktype::LOOP => "LOOP",
            Linktype::LINUX_SLL => "Linux SLL",
            Linktype::IPV4 => "IPv4",
            Linktype::LINUX_SLL2 => "Linux SLL2",
            _ => return None,
        })
    }
}

/// RAW, because a writer that only holds IP packets needs no invented link header.
impl Default for Linktype {
    fn default() -> Self {
        Linktype::RAW
    }
}

impl From<u32> for Linktype {
    fn from(n: u32) -> Self {
        Linktype(n)
    }
}

impl fmt::Display for Linktype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "linktype {}", self.0),
        }
    }
}

/// One packet record of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Record<'a> {
    /// 1-based number of the packet in the file, as Wireshark numbers frames.
    pub index: u64,
    /// Since the Unix epoch; zero for pcapng Simple Packet Blocks, which carry none.
    pub timestamp: Duration,
    /// The link layer the record was captured on (it may differ per pcapng interface).
    pub linktype: Linktype,
    pub kind: RecordKind<'a>,
}

/// What a captured frame holds, as far as this toolkit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RecordKind<'a> {
    /// A whole, unfragmented IPv4 UDP datagram.
    Udp(UdpDatagram<'a>),
    /// A fragment (first or later) of an IPv4 UDP datagram; not reassembled.
    Fragment {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        /// In bytes (the header field counts 8-byte units).
        offset: u16,
        more_fragments: bool,
    },
    /// Anything else: another protocol, or a packet too short or malformed to be read as UDP.
    Other(&'static str),
}

/// A UDP datagram; `payload` is exactly as long as the UDP length field says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UdpDatagram<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

/// A capture that cannot be read or written. Always names the file; reading errors past the
/// file header name the record too, counted like [`Record::index`].
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{file}: not a pcap or pcapng file (magic 0x{magic:08x})")]
    NotCapture { file: String, magic: u32 },
    #[error("{file}: not a pcap or pcapng file (only {len} bytes)")]
    TooShort { file: String, len: usize },
    #[error("{file}: file header: {problem}")]
    Header { file: String, problem: Problem },
    #[error("{file}: record {record}: {problem}")]
    Record {
        file: String,
        record: u64,
        problem: Problem,
    },
    #[error("{file}: cannot frame a UDP datagram for {linktype}")]
    UnsupportedLinktype { file: String, linktype: Linktype },
    #[error("{file}: {source}")]
    Payload {
        file: String,
        #[source]
        source: PayloadTooLarge,
    },
    #[error("{file}: timestamp {timestamp:?} is past what pcap can hold (year 2106)")]
    TimestampOutOfRange { file: String, timestamp: Duration },
    #[error("{file}: frame of {len} bytes exceeds the snaplen of {limit}")]
    FrameTooLarge {
        file: String,
        len: usize,
        limit: u32,
    },
}

/// What was wrong with the container's framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("truncated {what} (needs {need} bytes, {left} left)")]
    TruncatedHeader {
        what: &'static str,
        need: usize,
        left: usize,
    },
    #[error("truncated record (header says {declared} bytes, {left} left)")]
    TruncatedRecord { declared: u64, left: usize },
    #[error("{what} of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: usize,
    },
    #[error(
        "block type 0x{block_type:08x}: length {len} is not a multiple of 4 of at least {min}"
    )]
    BadBlockLength { block_type: u32, len: u32, min: u32 },
    #[error("block type 0x{block_type:08x}: trailing length {trailer} differs from {len}")]
    TrailerMismatch {
        block_type: u32,
        len: u32,
        trailer: u32,
    },
    #[error("pcapng section header: byte-order magic 0x{0:08x} is neither 0x1a2b3c4d nor swapped")]
    BadByteOrder(u32),
    #[error("pcapng version {major}.{minor} is not supported (only 1.x)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("packet on interface {interface}, but only {known} interfaces are described")]
    UnknownInterface { interface: u32, known: usize },
    #[error("{what} says {captured} captured bytes, the block holds {room}")]
    CapturedBeyondBlock {
        what: &'static str,
        captured: u32,
        room: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_for_snapshots() {
        let record = Record {
            index: 3,
            timestamp: Duration::new(1, 5),
            linktype: Linktype::RAW,
            kind: RecordKind::Udp(UdpDatagram {
                src: "198.18.0.10:1701".parse().unwrap(),
                dst: "198.18.0.1:1701".parse().unwrap(),
                payload: &[0xc8, 0x02],
            }),
        };
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"index":3,"timestamp":{"secs":1,"nanos":5},"linktype":101,"kind":{"Udp":{"src":"198.18.0.10:1701","dst":"198.18.0.1:1701","payload":[200,2]}}}"#
        );
        let other = RecordKind::Other("ARP");
        assert_eq!(serde_json::to_string(&other).unwrap(), r#"{"Other":"ARP"}"#);
    }

    #[test]
    fn linktype_names() {
        assert_eq!(Linktype::default(), Linktype::RAW);
        assert_eq!(Linktype::from(1).to_string(), "Ethernet (1)");
        assert_eq!(Linktype(9999).name(), None);
    }
}
