//! Writing classic pcap: UDP datagrams framed for the file's linktype, or frames as given.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use super::{CaptureError, Linktype};
use crate::ip::Ipv4UdpRepr;

/// libpcap's own maximum: room for any IPv4 datagram plus its link header.
const SNAPLEN: u32 = 262_144;

/// Locally administered unicast MACs, so a written Ethernet capture never names a real NIC.
pub(super) const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(super) const DESTINATION_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A UDP payload that cannot fit in one IPv4 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("UDP payload of {0} bytes exceeds the IPv4 maximum of 65507")]
pub struct PayloadTooLarge(pub usize);

/// Appends an IPv4 header (TTL 64, don't fragment, identification `ip_id`, header checksum)
/// and a UDP header (with checksum) followed by `payload` to `out`: an [`Ipv4UdpRepr`] emitted.
pub fn build_ipv4_udp(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
    ip_id: u16,
    out: &mut Vec<u8>,
) -> Result<(), PayloadTooLarge> {
    let repr = Ipv4UdpRepr {
        ident: ip_id,
        ..Ipv4UdpRepr::new(src, dst, payload.len())
    };
    match repr.emit_to_vec(payload, out) {
        Ok(_) => Ok(()),
        // A Vec always has room, so the payload's size is the only error.
        Err(_) => Err(PayloadTooLarge(payload.len())),
    }
}

/// Appends the link header that carries one IPv4 packet on `linktype`, or says it cannot.
pub(super) fn push_link_header(linktype: Linktype, out: &mut Vec<u8>) -> bool {
    const AF_INET: u32 = 2;
    const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
    const ARPHRD_ETHER: [u8; 2] = [0, 1];
    const PACKET_HOST: u8 = 0;
    const MAC_LEN: u8 = 6;
    match linktype {
        Linktype::RAW | Linktype::IPV4 => {}
        Linktype::ETHERNET => {
            out.extend_from_slice(&DESTINATION_MAC);
            out.extend_from_slice(&SOURCE_MAC);
            out.extend_from_slice(&ETHERTYPE_IPV4);
        }
        // The capturing host's order; this file is little-endian, as such a host writes it.
        Linktype::NULL => out.extend_from_slice(&AF_INET.to_le_bytes()),
        Linktype::LOOP => out.extend_from_slice(&AF_INET.to_be_bytes()),
        Linktype::LINUX_SLL => {
            out.extend_from_slice(&[0, PACKET_HOST]);
            out.extend_from_slice(&ARPHRD_ETHER);
            out.extend_from_slice(&[0, MAC_LEN]);
            out.extend_from_slice(&SOURCE_MAC);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ETHERTYPE_IPV4);
        }
        Linktype::LINUX_SLL2 => {
            out.extend_from_slice(&ETHERTYPE_IPV4);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&1u32.to_be_bytes()); // interface index
            out.extend_from_slice(&ARPHRD_ETHER);
            out.extend_from_slice(&[PACKET_HOST, MAC_LEN]);
            out.extend_from_slice(&SOURCE_MAC);
            out.extend_from_slice(&[0, 0]);
        }
        _ => return false,
    }
    true
}

/// Writes a classic little-endian, microsecond pcap file.
///
/// Output is buffered: call [`flush`](Self::flush) (or [`into_inner`](Self::into_inner)) to
/// see write errors; dropping the writer flushes but cannot report them.
pub struct CaptureWriter<W: Write = File> {
    out: BufWriter<W>,
    name: String,
    linktype: Linktype,
    next_ip_id: u16,
    /// Reused for every datagram, so writing allocates nothing once warm.
    frame: Vec<u8>,
}

impl CaptureWriter<File> {
    /// Creates (or truncates) the file at `path`; errors name it as `path` is written.
    pub fn create(path: impl AsRef<Path>, linktype: Linktype) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        match File::create(path) {
            Ok(file) => Self::named(file, linktype, name),
            Err(source) => Err(CaptureError::Io { file: name, source }),
        }
    }
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the file header to `writer` at once.
    pub fn new(writer: W, linktype: Linktype) -> Result<Self, CaptureError> {
        Self::named(writer, linktype, "<capture writer>".to_owned())
    }

    fn named(writer: W, linktype: Linktype, name: String) -> Result<Self, CaptureError> {
        let mut writer = CaptureWriter {
            out: BufWriter::new(writer),
            name,
            linktype,
            next_ip_id: 1,
            frame: Vec::new(),
        };
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // Bytes 8..16: time zone and accuracy, always zero.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&linktype.0.to_le_bytes());
        writer
            .out
            .write_all(&header)
            .map_err(|e| writer.io_error(e))?;
        Ok(writer)
    }

    pub fn linktype(&self) -> Linktype {
        self.linktype
    }

    /// Records one UDP datagram as sent from `src` to `dst`, with the link header the linktype
    /// needs and IPv4 identifications counting up from 1.
    pub fn write_udp(
        &mut self,
        timestamp: Duration,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), CaptureError> {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        let built = self.frame_udp(src, dst, payload, &mut frame);
        let written = built.and_then(|()| self.write_raw(timestamp, &frame));
        self.frame = frame;
        written
    }

    fn frame_udp(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: &[u8],
        frame: &mut Vec<u8>,
    ) -> Result<(), CaptureError> {
        if !push_link_header(self.linktype, frame) {
            return Err(CaptureError::UnsupportedLinktype {
                file: self.name.clone(),
                linktype: self.linktype,
            });
        }
        build_ipv4_udp(src, dst, payload, self.next_ip_id, frame).map_err(|source| {
            CaptureError::Payload {
                file: self.name.clone(),
                source,
            }
        })?;
        self.next_ip_id = self.next_ip_id.wrapping_add(1);
        Ok(())
    }

    /// Records `frame` as it is: it must start with the linktype's own header.
    pub fn write_raw(&mut self, timestamp: Duration, frame: &[u8]) -> Result<(), CaptureError> {
        let Ok(seconds) = u32::try_from(timestamp.as_secs()) else {
            return Err(CaptureError::TimestampOutOfRange {
                file: self.name.clone(),
                timestamp,
            });
        };
        let len = match u32::try_from(frame.len()) {
            Ok(len) if len <= SNAPLEN => len,
            _ => {
                return Err(CaptureError::FrameTooLarge {
                    file: self.name.clone(),
                    len: frame.len(),
                    limit: SNAPLEN,
                })
            }
        };
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&seconds.to_le_bytes());
        header[4..8].copy_from_slice(&timestamp.subsec_micros().to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        let written = self
            .out
            .write_all(&header)
            .and_then(|()| self.out.write_all(frame));
        written.map_err(|e| self.io_error(e))
    }

    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.out.flush().map_err(|e| self.io_error(e))
    }

    /// Flushes and hands back the underlying writer.
    pub fn into_inner(self) -> Result<W, CaptureError> {
        let name = self.name;
        self.out.into_inner().map_err(|e| CaptureError::Io {
            file: name,
            source: e.into_error(),
        })
    }

    fn io_error(&self, source: io::Error) -> CaptureError {
        CaptureError::Io {
            file: self.name.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use pnet_packet::ipv4::{self, Ipv4Packet};
    use pnet_packet::udp::{self, UdpPacket};
    use pnet_packet::Packet;

    use super::super::{CaptureReader, RecordKind, UdpDatagram};
    use super::*;

    const LAC: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 1701);
    const LNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 1701);
    /// An L2TP ZLB acknowledgement: control, length 12, tunnel 1.
    const ZLB: [u8; 12] = [0xc8, 0x02, 0x00, 0x0c, 0x00, 0x01, 0, 0, 0, 0, 0, 0];

    /// Checked by hand against RFC 791 / RFC 768 arithmetic (a separate Python script).
    const ZLB_DATAGRAM: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xa4, 0x8d, 0xc0, 0x00, 0x02,
        0x01, 0xc0, 0x00, 0x02, 0x02, 0x06, 0xa5, 0x06, 0xa5, 0x00, 0x14, 0xa6, 0x68, 0xc8, 0x02,
        0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// Both checksums verify by pnet's own arithmetic.
    fn assert_checksums(datagram: &[u8]) {
        let ip = Ipv4Packet::new(datagram).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        let udp = UdpPacket::new(ip.payload()).unwrap();
        let expected = match udp::ipv4_checksum(&udp, &ip.get_source(), &ip.get_destination()) {
            0 => 0xffff,
            sum => sum,
        };
        assert_eq!(udp.get_checksum(), expected);
    }

    #[test]
    fn golden_datagram() {
        let mut out = vec![0xee];
        build_ipv4_udp(LAC, LNS, &ZLB, 0x1234, &mut out).unwrap();
        assert_eq!(out[0], 0xee, "appends, keeps what was there");
        assert_eq!(out[1..], ZLB_DATAGRAM);
        assert_checksums(&out[1..]);
    }

    #[test]
    fn checksums_verify_for_odd_and_empty_payloads() {
        for len in [0, 1, 2, 3, 99, 1400, 65_507] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut out = Vec::new();
            build_ipv4_udp(LAC, LNS, &payload, len as u16, &mut out).unwrap();
            assert_eq!(out.len(), 28 + len);
            assert_checksums(&out);
        }
    }

    #[test]
    fn computed_zero_udp_checksum_is_sent_as_ones() {
        // With the last two bytes equal to the checksum they produce as zeros, the sum
        // becomes all ones and its complement zero.
        let mut payload = ZLB.to_vec();
        payload.extend_from_slice(&[0, 0]);
        let mut out = Vec::new();
        build_ipv4_udp(LAC, LNS, &payload, 1, &mut out).unwrap();
        let checksum = [out[26], out[27]];
        payload[12..].copy_from_slice(&checksum);
        out.clear();
        build_ipv4_udp(LAC, LNS, &payload, 1, &mut out).unwrap();
        assert_eq!(out[26..28], [0xff, 0xff]);
        assert_checksums(&out);
    }

    #[test]
    fn payload_too_large() {
        let mut out = Vec::new();
        assert_eq!(
            build_ipv4_udp(LAC, LNS, &[0; 65_508], 1, &mut out),
            Err(PayloadTooLarge(65_508))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn roundtrip_every_linktype() {
        let t = Duration::new(1_700_000_000, 123_456_789);
        for linktype in Linktype::SUPPORTED {
            let mut writer = CaptureWriter::new(Vec::new(), linktype).unwrap();
            writer.write_udp(t, LAC, LNS, &ZLB).unwrap();
            writer
                .write_udp(t + Duration::from_millis(1), LNS, LAC, b"")
                .unwrap();
            let bytes = writer.into_inner().unwrap();

            let mut reader = CaptureReader::new(&bytes[..], "roundtrip").unwrap();
            let first = reader.next_datagram().unwrap().unwrap();
            assert_eq!(first.index, 1);
            assert_eq!(first.linktype, linktype);
            assert_eq!(first.timestamp, Duration::new(1_700_000_000, 123_456_000));
            assert_eq!(
                first.kind,
                RecordKind::Udp(UdpDatagram {
                    src: LAC,
                    dst: LNS,
                    payload: &ZLB
                }),
                "{linktype}"
            );
            let second = reader.next_datagram().unwrap().unwrap();
            assert_eq!(second.index, 2);
            assert_eq!(second.timestamp, Duration::new(1_700_000_000, 124_456_000));
            assert!(
                matches!(second.kind, RecordKind::Udp(u) if u.src == LNS && u.payload.is_empty())
            );
            assert!(reader.next_datagram().is_none());
        }
    }

    /// pcap-file is an independent reader: it must agree on every header field.
    #[test]
    fn pcap_file_reads_what_we_write() {
        let mut writer = CaptureWriter::new(Vec::new(), Linktype::ETHERNET).unwrap();
        let t = Duration::new(1_600_000_000, 999_999_999);
        writer.write_udp(t, LAC, LNS, &ZLB).unwrap();
        writer.write_udp(t, LAC, LNS, &ZLB).unwrap();
        let bytes = writer.into_inner().unwrap();

        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        let header = reader.header();
        assert_eq!(header.datalink, pcap_file::DataLink::ETHERNET);
        assert_eq!(header.endianness, pcap_file::Endianness::Little);
        assert_eq!(header.ts_resolution, pcap_file::TsResolution::MicroSecond);
        for ip_id in [1u16, 2] {
            let packet = reader.next_packet().unwrap().unwrap();
            assert_eq!(packet.timestamp, Duration::new(1_600_000_000, 999_999_000));
            assert_eq!(packet.orig_len as usize, packet.data.len());
            assert_eq!(packet.data[..6], DESTINATION_MAC);
            assert_eq!(packet.data[6..12], SOURCE_MAC);
            let mut expected = ZLB_DATAGRAM;
            // Same datagram but for the identification, and so the header checksum.
            expected[4..6].copy_from_slice(&ip_id.to_be_bytes());
            let ip = &packet.data[14..];
            assert_eq!(ip[..4], expected[..4]);
            assert_eq!(ip[4..6], ip_id.to_be_bytes());
            assert_eq!(ip[12..], expected[12..]);
            assert_checksums(ip);
        }
        assert!(reader.next_packet().is_none());
    }

    #[test]
    fn raw_frames_are_written_as_given() {
        let mut writer = CaptureWriter::new(Vec::new(), Linktype(147)).unwrap();
        writer.write_raw(Duration::from_secs(5), b"opaque").unwrap();
        let error = writer
            .write_udp(Duration::ZERO, LAC, LNS, &ZLB)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "<capture writer>: cannot frame a UDP datagram for linktype 147"
        );
        let bytes = writer.into_inner().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 6);
        assert_eq!(bytes[20..24], 147u32.to_le_bytes());
        let mut reader = CaptureReader::new(&bytes[..], "raw").unwrap();
        let record = reader.next_datagram().unwrap().unwrap();
        assert_eq!(record.kind, RecordKind::Other("unsupported linktype"));
        assert_eq!(record.timestamp, Duration::from_secs(5));
    }

    #[test]
    fn limits_are_errors() {
        let mut writer = CaptureWriter::new(Vec::new(), Linktype::default()).unwrap();
        assert_eq!(writer.linktype(), Linktype::RAW);
        let late = Duration::from_secs(u64::from(u32::MAX) + 1);
        assert!(matches!(
            writer.write_udp(late, LAC, LNS, &ZLB),
            Err(CaptureError::TimestampOutOfRange { .. })
        ));
        assert!(matches!(
            writer.write_raw(Duration::ZERO, &vec![0; SNAPLEN as usize + 1]),
            Err(CaptureError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            writer.write_udp(Duration::ZERO, LAC, LNS, &[0; 70_000]),
            Err(CaptureError::Payload { .. })
        ));
        // Nothing half-written: only the file header.
        assert_eq!(writer.into_inner().unwrap().len(), 24);
    }

    #[test]
    fn create_writes_a_file() {
        let path = std::env::temp_dir().join(format!("l2tp-capture-{}.pcap", std::process::id()));
        let mut writer = CaptureWriter::create(&path, Linktype::RAW).unwrap();
        writer
            .write_udp(Duration::from_secs(1), LAC, LNS, &ZLB)
            .unwrap();
        writer.flush().unwrap();
        let mut reader = CaptureReader::open(&path).unwrap();
        assert_eq!(reader.name(), path.display().to_string());
        assert!(matches!(reader.next_datagram(), Some(Ok(_))));
        std::fs::remove_file(&path).unwrap();

        let error = CaptureWriter::create("/nonexistent/dir/out.pcap", Linktype::RAW).err();
        assert!(error
            .unwrap()
            .to_string()
            .starts_with("/nonexistent/dir/out.pcap: "));
    }
}
