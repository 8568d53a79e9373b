//! Our decoder against tshark, field by field, on every fixture in `captures/` and on a capture
//! our own encoder writes with every message type and every AVP type (hidden ones too).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

use l2tp::capture::{CaptureReader, CaptureWriter, Linktype, RecordKind};
use l2tp::wire::message::ParseOptions;
use l2tp::wire::{samples, Header, PacketRepr};
use l2tpkit_tests::{repo_root, require, tshark_l2tp, TsharkPacket};

/// What both decoders must agree on, from our side.
#[derive(Debug, PartialEq, Eq)]
struct Ours {
    is_control: bool,
    length: Option<u16>,
    tunnel: u16,
    session: u16,
    ns: Option<u16>,
    nr: Option<u16>,
    message_type: Option<u16>,
    /// IETF AVP types that are not hidden: what tshark lists in `l2tp.avp.type`.
    avp_types: Vec<u16>,
    mandatory: Vec<bool>,
    hidden: Vec<bool>,
}

fn ours(path: &Path, secret: Option<&[u8]>) -> BTreeMap<u64, Ours> {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut packets = BTreeMap::new();
    while let Some(record) = reader.next_datagram() {
        let record = record.unwrap_or_else(|err| panic!("{err}"));
        let RecordKind::Udp(datagram) = record.kind else {
            continue;
        };
        if datagram.src.port() != 1701 && datagram.dst.port() != 1701 {
            continue;
        }
        let header = Header::new_checked(datagram.payload)
            .unwrap_or_else(|err| panic!("{}: record {}: {err}", path.display(), record.index));
        let parsed = PacketRepr::parse(datagram.payload, &ParseOptions { secret })
            .unwrap_or_else(|err| panic!("{}: record {}: {err}", path.display(), record.index));
        let h = parsed.header();
        let mut entry = Ours {
            is_control: h.is_control,
            length: header.length(),
            tunnel: h.tunnel_id,
            session: h.session_id,
            ns: h.sequence.map(|s| s.ns),
            nr: h.sequence.map(|s| s.nr),
            message_type: None,
            avp_types: Vec::new(),
            mandatory: Vec::new(),
            hidden: Vec::new(),
        };
        if let PacketRepr::Control(message) = &parsed {
            entry.message_type = message.message_type().map(|t| t.to_u16());
            for avp in &message.avps {
                if avp.value.vendor_id() == 0 && !avp.hidden {
                    entry.avp_types.push(avp.value.attr_type());
                }
                entry.mandatory.push(avp.mandatory);
                entry.hidden.push(avp.hidden);
            }
        }
        packets.insert(record.index, entry);
    }
    packets
}

fn theirs_as_ours(packet: &TsharkPacket) -> Ours {
    Ours {
        is_control: packet.is_control,
        length: packet.length,
        tunnel: packet.tunnel,
        session: packet.session,
        ns: packet.ns,
        nr: packet.nr,
        message_type: packet.message_type,
        avp_types: packet.avp_types.clone(),
        mandatory: packet.mandatory.clone(),
        hidden: packet.hidden.clone(),
    }
}

/// Compares every packet; returns how many were compared.
fn agree(path: &Path, secret: Option<&[u8]>, malformed_allowed: bool) -> usize {
    let ours = ours(path, secret);
    let theirs = tshark_l2tp(path, 1701);
    assert!(!ours.is_empty(), "{}: no L2TP packets", path.display());
    let their_frames: Vec<u64> = theirs.iter().map(|p| p.frame).collect();
    let our_frames: Vec<u64> = ours.keys().copied().collect();
    assert_eq!(
        our_frames,
        their_frames,
        "{}: frame sets differ",
        path.display()
    );
    for packet in &theirs {
        let mine = &ours[&packet.frame];
        assert_eq!(
            mine,
            &theirs_as_ours(packet),
            "{}: frame {} differs (left: ours, right: tshark)",
            path.display(),
            packet.frame
        );
        if !malformed_allowed || mine.is_control {
            assert!(
                !packet.malformed,
                "{}: tshark flags frame {} as malformed: {}",
                path.display(),
                packet.frame,
                packet.expert
            );
        }
    }
    theirs.len()
}

/// `name` in a scratch directory of its own; the test removes that directory when it passes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l2tpkit-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

#[test]
fn our_encoder_agrees_with_tshark_on_every_message_and_avp() {
    if !require("tshark") {
        return;
    }
    let path = scratch("every-message.pcap");
    let mut writer = CaptureWriter::create(&path, Linktype::RAW).expect("create pcap");
    let lac: SocketAddrV4 = "127.0.0.3:1701".parse().unwrap();
    let lns: SocketAddrV4 = "127.0.0.2:1701".parse().unwrap();
    let packets = samples::every_message();
    for (i, packet) in packets.iter().enumerate() {
        let mut buf = vec![0; packet.buffer_len()];
        let len = packet.emit(&mut buf, Some(samples::SECRET)).expect("emit");
        let (src, dst) = if i % 2 == 0 { (lac, lns) } else { (lns, lac) };
        writer
            .write_udp(Duration::from_millis(i as u64), src, dst, &buf[..len])
            .expect("write");
    }
    writer.flush().expect("flush");
    drop(writer);
    let compared = agree(&path, Some(samples::SECRET), false);
    assert_eq!(compared, packets.len());
    let _ = std::fs::remove_dir_all(path.parent().expect("the scratch directory"));
}

#[test]
fn fixtures_agree_with_tshark() {
    if !require("tshark") {
        return;
    }
    let dir = repo_root().join("captures");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures/")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 4,
        "expected the xl2tpd fixtures in captures/"
    );
    for fixture in fixtures {
        // Data frames from the pppd stand-in are not real PPP; tshark's PPP dissector may
        // complain about them, never about control messages.
        let compared = agree(&fixture, None, true);
        eprintln!("{}: {compared} packets agree", fixture.display());
    }
}
