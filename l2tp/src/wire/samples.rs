//! A conversation that uses every message type and every AVP type of RFC 2661, hidden AVPs
//! included. Tests compare it against tshark, benchmarks replay it, fuzzers start from it.

use std::borrow::Cow;

use super::avp::{AvpRepr, AvpValue};
use super::header::HeaderRepr;
use super::message::{ControlMessage, MessageType, PacketRepr};

/// The tunnel secret the hidden AVPs of [`every_message`] are hidden with.
pub const SECRET: &[u8] = b"l2tpkit-sample-secret";

fn hidden(value: AvpValue<'static>) -> AvpRepr<'static> {
    AvpRepr {
        hidden: true,
        ..AvpRepr::mandatory(value)
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
    let mut all = vec![AvpRepr::mandatory(AvpValue::MessageType(kind))];
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
                AvpRepr::mandatory(ProtocolVersion {
                    version: 1,
                    revision: 0,
                }),
                AvpRepr::mandatory(HostName(text("lac.example"))),
                AvpRepr::mandatory(FramingCapabilities(0x3)),
                AvpRepr::mandatory(AssignedTunnelId(lac_tid)),
                AvpRepr::mandatory(BearerCapabilities(0x3)),
                AvpRepr::optional(FirmwareRevision(0x0690)),
                AvpRepr::optional(VendorName(text("l2tpkit"))),
                AvpRepr::mandatory(ReceiveWindowSize(8)),
                AvpRepr::mandatory(Challenge(Cow::Borrowed(b"0123456789abcdef"))),
                AvpRepr::optional(TieBreaker([1, 2, 3, 4, 5, 6, 7, 8])),
                AvpRepr::optional(Vendor {
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
                AvpRepr::mandatory(ProtocolVersion {
                    version: 1,
                    revision: 0,
                }),
                AvpRepr::mandatory(FramingCapabilities(0x1)),
                AvpRepr::mandatory(HostName(text("lns.example"))),
                AvpRepr::mandatory(AssignedTunnelId(lns_tid)),
                AvpRepr::optional(VendorName(text("xelerance.com"))),
                AvpRepr::mandatory(ReceiveWindowSize(4)),
                AvpRepr::mandatory(Challenge(Cow::Borrowed(b"fedcba9876543210"))),
                AvpRepr::mandatory(ChallengeResponse([0xaa; 16])),
            ],
        ),
        control(
            T::Scccn,
            lns_tid,
            0,
            1,
            1,
            vec![AvpRepr::mandatory(ChallengeResponse([0x55; 16]))],
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
                AvpRepr::mandatory(RandomVector(Cow::Borrowed(
                    b"\x10\x32\x54\x76\x98\xba\xdc\xfe",
                ))),
                hidden(AssignedSessionId(lac_sid)),
                AvpRepr::mandatory(CallSerialNumber(1)),
                AvpRepr::mandatory(BearerType(0x2)),
                AvpRepr::mandatory(PhysicalChannelId(7)),
                hidden(CallingNumber(text("5551234"))),
                AvpRepr::mandatory(CalledNumber(text("5556789"))),
                AvpRepr::mandatory(SubAddress(text("12"))),
            ],
        ),
        control(
            T::Icrp,
            lac_tid,
            lac_sid,
            1,
            3,
            vec![AvpRepr::mandatory(AssignedSessionId(lns_sid))],
        ),
        control(
            T::Iccn,
            lns_tid,
            lns_sid,
            3,
            2,
            vec![
                AvpRepr::mandatory(TxConnectSpeed(64_000)),
                AvpRepr::mandatory(FramingType(0x1)),
                AvpRepr::mandatory(InitialReceivedLcpConfreq(Cow::Borrowed(&[
                    0x01, 0x04, 0x05, 0xdc,
                ]))),
                AvpRepr::mandatory(LastSentLcpConfreq(Cow::Borrowed(&[0x01, 0x04, 0x05, 0xdc]))),
                AvpRepr::mandatory(LastReceivedLcpConfreq(Cow::Borrowed(&[
                    0x05, 0x06, 0x12, 0x34, 0x56, 0x78,
                ]))),
                AvpRepr::mandatory(ProxyAuthenType(2)),
                AvpRepr::mandatory(ProxyAuthenName(text("user"))),
                AvpRepr::mandatory(ProxyAuthenChallenge(Cow::Borrowed(&[0x11; 16]))),
                AvpRepr::mandatory(ProxyAuthenId { reserved: 0, id: 7 }),
                AvpRepr::mandatory(ProxyAuthenResponse(Cow::Borrowed(&[0x22; 16]))),
                AvpRepr::mandatory(PrivateGroupId(text("group-1"))),
                AvpRepr::mandatory(RxConnectSpeed(56_000)),
                AvpRepr::mandatory(SequencingRequired),
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
                AvpRepr::mandatory(AssignedSessionId(0x0303)),
                AvpRepr::mandatory(CallSerialNumber(2)),
                AvpRepr::mandatory(MinimumBps(9_600)),
                AvpRepr::mandatory(MaximumBps(64_000)),
                AvpRepr::mandatory(BearerType(0x1)),
                AvpRepr::mandatory(FramingType(0x2)),
                AvpRepr::mandatory(CalledNumber(text("5550000"))),
                AvpRepr::mandatory(SubAddress(text("3"))),
            ],
        ),
        control(
            T::Ocrp,
            lns_tid,
            0x0303,
            5,
            3,
            vec![
                AvpRepr::mandatory(AssignedSessionId(0x0404)),
                AvpRepr::mandatory(PhysicalChannelId(9)),
            ],
        ),
        control(
            T::Occn,
            lns_tid,
            0x0303,
            6,
            3,
            vec![
                AvpRepr::mandatory(TxConnectSpeed(64_000)),
                AvpRepr::mandatory(FramingType(0x2)),
                AvpRepr::mandatory(RxConnectSpeed(64_000)),
                AvpRepr::mandatory(SequencingRequired),
            ],
        ),
        control(
            T::Wen,
            lns_tid,
            lns_sid,
            7,
            3,
            vec![AvpRepr::mandatory(CallErrors {
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
            vec![AvpRepr::mandatory(Accm {
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
                AvpRepr::mandatory(ResultCode {
                    result: 3,
                    error: Some(0),
                    message: Some(text("administrative")),
                }),
                AvpRepr::mandatory(AssignedSessionId(lns_sid)),
                AvpRepr::mandatory(Q931CauseCode {
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
                AvpRepr::mandatory(AssignedTunnelId(lac_tid)),
                AvpRepr::mandatory(ResultCode {
                    result: 6,
                    error: None,
                    message: None,
                }),
                AvpRepr::optional(Unknown {
                    attr_type: 20,
                    value: Cow::Borrowed(b"?"),
                }),
            ],
        ),
    ]
}
