//! A conversation that uses every message type and every AVP type of RFC 2661, hidden AVPs
//! included. Tests compare it against tshark, benchmarks replay it, fuzzers start from it.

use std::borrow::Cow;

use super::avp::{AvpRepr, AvpValue};
use super::header::HeaderRepr;
use super::message::{ControlMessage, MessageType, PacketRepr};

/// The tunnel secret the hidden AVPs of [`every_message`] are hidden with.
pub const SECRET: &[u8] = b"l2tpkit-sample-secret";

fn m(value: AvpValue<'static>) -> AvpRepr<'static> {
    AvpRepr {
        mandatory: true,
        hidden: false,
        reserved: 0,
        value,
    }
}

fn opt(value: AvpValue<'static>) -> AvpRepr<'static> {
    AvpRepr {
        mandatory: false,
        ..m(value)
    }
}

fn hidden(value: AvpValue<'static>) -> AvpRepr<'static> {
    AvpRepr {
        hidden: true,
        ..m(value)
    }
}

fn text(value: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(value.as_bytes())
}

fn control(
    kind: MessageType,
    tunnel: u16,
    session: u16,
    ns: u16,
    nr: u16,
    avps: Vec<AvpRepr<'static>>,
) -> PacketRepr<'static> {
    let mut all = vec![m(AvpValue::MessageType(kind))];
    all.extend(avps);
    PacketRepr::Control(ControlMessage {
        header: HeaderRepr::control(tunnel, session, ns, nr),
        avps: all,
    })
}

/// Every message type (and a ZLB and data messages), covering AVP types 0–39 between them.
pub fn every_message() -> Vec<PacketRepr<'static>> {
    use crate::wire::message::MessageType as T;
    use AvpValue::*;
    let (lac_tid, lns_tid, lac_sid, lns_sid) = (0x1111, 0x2222, 0x0101, 0x0202);
    vec![
        control(
            T::Sccrq,
            0,
            0,
            0,
            0,
            vec![
                m(ProtocolVersion {
                    version: 1,
                    revision: 0,
                }),
                m(HostName(text("lac.example"))),
                m(FramingCapabilities(0x3)),
                m(AssignedTunnelId(lac_tid)),
                m(BearerCapabilities(0x3)),
                opt(FirmwareRevision(0x0690)),
                opt(VendorName(text("l2tpkit"))),
                m(ReceiveWindowSize(8)),
                m(Challenge(Cow::Borrowed(b"0123456789abcdef"))),
                opt(TieBreaker([1, 2, 3, 4, 5, 6, 7, 8])),
                opt(Vendor {
                    vendor_id: 9,
                    attr_type: 42,
                    value: Cow::Borrowed(b"cisco"),
                }),
            ],
        ),
        control(
            T::Sccrp,
            lac_tid,
            0,
            0,
            1,
            vec![
                m(ProtocolVersion {
                    version: 1,
                    revision: 0,
                }),
                m(FramingCapabilities(0x1)),
                m(HostName(text("lns.example"))),
                m(AssignedTunnelId(lns_tid)),
                opt(VendorName(text("xelerance.com"))),
                m(ReceiveWindowSize(4)),
                m(Challenge(Cow::Borrowed(b"fedcba9876543210"))),
                m(ChallengeResponse([0xaa; 16])),
            ],
        ),
        control(
            T::Scccn,
            lns_tid,
            0,
            1,
            1,
            vec![m(ChallengeResponse([0x55; 16]))],
        ),
        PacketRepr::Control(ControlMessage {
            header: HeaderRepr::control(lac_tid, 0, 1, 2),
            avps: Vec::new(),
        }),
        control(
            T::Icrq,
            lns_tid,
            0,
            2,
            1,
            vec![
                m(RandomVector(Cow::Borrowed(
                    b"\x10\x32\x54\x76\x98\xba\xdc\xfe",
                ))),
                hidden(AssignedSessionId(lac_sid)),
                m(CallSerialNumber(1)),
                m(BearerType(0x2)),
                m(PhysicalChannelId(7)),
                hidden(CallingNumber(text("5551234"))),
                m(CalledNumber(text("5556789"))),
                m(SubAddress(text("12"))),
            ],
        ),
        control(
            T::Icrp,
            lac_tid,
            lac_sid,
            1,
            3,
            vec![m(AssignedSessionId(lns_sid))],
        ),
        control(
            T::Iccn,
            lns_tid,
            lns_sid,
            3,
            2,
            vec![
                m(TxConnectSpeed(64_000)),
                m(FramingType(0x1)),
                m(InitialReceivedLcpConfreq(Cow::Borrowed(&[
                    0x01, 0x04, 0x05, 0xdc,
                ]))),
                m(LastSentLcpConfreq(Cow::Borrowed(&[0x01, 0x04, 0x05, 0xdc]))),
                m(LastReceivedLcpConfreq(Cow::Borrowed(&[
                    0x05, 0x06, 0x12, 0x34, 0x56, 0x78,
                ]))),
                m(ProxyAuthenType(2)),
                m(ProxyAuthenName(text("user"))),
                m(ProxyAuthenChallenge(Cow::Borrowed(&[0x11; 16]))),
                m(ProxyAuthenId { reserved: 0, id: 7 }),
                m(ProxyAuthenResponse(Cow::Borrowed(&[0x22; 16]))),
                m(PrivateGroupId(text("group-1"))),
                m(RxConnectSpeed(56_000)),
                m(SequencingRequired),
            ],
        ),
        PacketRepr::Data {
            header: HeaderRepr::data(lns_tid, lns_sid),
            // PPP LCP Echo-Request, address/control bytes first (RFC 1661 §5.8).
            payload: &[
                0xff, 0x03, 0xc0, 0x21, 0x09, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
            ],
        },
        control(T::Hello, lns_tid, 0, 4, 2, Vec::new()),
        control(
            T::Ocrq,
            lac_tid,
            0,
            2,
            5,
            vec![
                m(AssignedSessionId(0x0303)),
                m(CallSerialNumber(2)),
                m(MinimumBps(9_600)),
                m(MaximumBps(64_000)),
                m(BearerType(0x1)),
                m(FramingType(0x2)),
                m(CalledNumber(text("5550000"))),
                m(SubAddress(text("3"))),
            ],
        ),
        control(
            T::Ocrp,
            lns_tid,
            0x0303,
            5,
            3,
            vec![m(AssignedSessionId(0x0404)), m(PhysicalChannelId(9))],
        ),
        control(
            T::Occn,
            lns_tid,
            0x0303,
            6,
            3,
            vec![
                m(TxConnectSpeed(64_000)),
                m(FramingType(0x2)),
                m(RxConnectSpeed(64_000)),
                m(SequencingRequired),
            ],
        ),
        control(
            T::Wen,
            lns_tid,
            lns_sid,
            7,
            3,
            vec![m(CallErrors {
                reserved: 0,
                crc_errors: 1,
                framing_errors: 2,
                hardware_overruns: 3,
                buffer_overruns: 4,
                timeout_errors: 5,
                alignment_errors: 6,
            })],
        ),
        control(
            T::Sli,
            lac_tid,
            lac_sid,
            3,
            8,
            vec![m(Accm {
                reserved: 0,
                send_accm: 0xffff_ffff,
                receive_accm: 0x0000_0000,
            })],
        ),
        control(
            T::Cdn,
            lac_tid,
            lac_sid,
            4,
            8,
            vec![
                m(ResultCode {
                    result: 3,
                    error: Some(0),
                    message: Some(text("administrative")),
                }),
                m(AssignedSessionId(lns_sid)),
                m(Q931CauseCode {
                    cause: 16,
                    message: 0x45,
                    advisory: Some(text("normal clearing")),
                }),
            ],
        ),
        control(
            T::StopCcn,
            lns_tid,
            0,
            8,
            5,
            vec![
                m(AssignedTunnelId(lac_tid)),
                m(ResultCode {
                    result: 6,
                    error: None,
                    message: None,
                }),
                opt(Unknown {
                    attr_type: 20,
                    value: Cow::Borrowed(b"?"),
                }),
            ],
        ),
    ]
}
