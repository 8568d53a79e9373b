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
    for linktype in Linktype::SUPPORTED {
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
    for linktype in Linktype::SUPPORTED {
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
