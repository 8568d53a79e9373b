use crate::malformed::{BadValue, Truncated};
use std::borrow::Cow;

use super::strategies;
use super::*;
use crate::wire::message_type::MessageType;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::json;

const SECRET: &[u8] = b"tunnel-secret";
const RV: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const UNHIDE: Unhide<'static> = Unhide {
    secret: SECRET,
    random_vector: &RV,
};

fn parse(bytes: &[u8], unhide: Option<&Unhide>) -> Result<AvpRepr<'static>> {
    let avp = Avp::new_checked(bytes, 20)?;
    AvpRepr::parse(&avp, 20, unhide).map(AvpRepr::into_owned)
}

fn emit(repr: &AvpRepr, hide: Option<&Unhide>) -> Result<Vec<u8>> {
    let mut buf = vec![0; repr.buffer_len()];
    let len = repr.emit(&mut buf, hide)?;
    assert_eq!(len, buf.len());
    Ok(buf)
}

/// Parses `bytes`, emits the repr back over a dirty buffer, and checks the one-line form.
fn golden(bytes: &[u8], repr: AvpRepr<'static>, display: &str) {
    assert_eq!(parse(bytes, None).unwrap(), repr, "parse {display}");
    assert_eq!(repr.buffer_len(), bytes.len(), "buffer_len {display}");
    let mut buf = vec![0xa5; bytes.len() + 3];
    assert_eq!(repr.emit(&mut buf, None).unwrap(), bytes.len());
    assert_eq!(&buf[..bytes.len()], bytes, "emit {display}");
    assert_eq!(buf[bytes.len()..], [0xa5; 3], "emit past the AVP");
    assert_eq!(repr.to_string(), display);
}

#[test]
fn golden_avps() {
    use AvpValue as V;
    golden(
        &[0x80, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
        AvpRepr::mandatory(V::MessageType(MessageType::Sccrq)),
        "msg=SCCRQ",
    );
    golden(
        &[0x80, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
        AvpRepr::mandatory(V::ResultCode {
            result: 1,
            error: None,
            message: None,
        }),
        "result=1",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x06],
        AvpRepr::mandatory(V::ResultCode {
            result: 2,
            error: Some(6),
            message: None,
        }),
        "result=2/6",
    );
    golden(
        &[
            0x80, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x06, b'm', b's', b'g',
        ],
        AvpRepr::mandatory(V::ResultCode {
            result: 2,
            error: Some(6),
            message: Some(Cow::Borrowed(b"msg")),
        }),
        "result=2/6\"msg\"",
    );
    golden(
        &[0x80, 0x08, 0x00, 0x00, 0x00, 0x02, 0x01, 0x00],
        AvpRepr::mandatory(V::ProtocolVersion {
            version: 1,
            revision: 0,
        }),
        "ver=1.0",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03],
        AvpRepr::mandatory(V::FramingCapabilities(3)),
        "fcap=0x3",
    );
    golden(
        &[
            0x00, 0x0e, 0x00, 0x00, 0x00, 0x05, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        ],
        AvpRepr::optional(V::TieBreaker([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
        ])),
        "tie=0011223344556677",
    );
    golden(
        &[0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x06, 0x90],
        AvpRepr::optional(V::FirmwareRevision(0x0690)),
        "fw=1680",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x07, b'l', b'n', b's', b'1'],
        AvpRepr::mandatory(V::HostName(Cow::Borrowed(b"lns1"))),
        "host=lns1",
    );
    golden(
        &[
            0x00, 0x0f, 0x00, 0x00, 0x00, 0x08, b'x', b' ', b'"', b'\\', 0xc3, 0xa9, 0x0a, b'!',
            b'~',
        ],
        AvpRepr::optional(V::VendorName(Cow::Borrowed(b"x \"\\\xc3\xa9\n!~"))),
        "vendor=x\\x20\\\"\\\\\\xc3\\xa9\\x0a!~",
    );
    golden(
        &[0x80, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05],
        AvpRepr::mandatory(V::AssignedTunnelId(5)),
        "tid=5",
    );
    golden(
        &[0x80, 0x08, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x04],
        AvpRepr::mandatory(V::ReceiveWindowSize(4)),
        "rwin=4",
    );
    let mut challenge = vec![0x80, 0x16, 0x00, 0x00, 0x00, 0x0b];
    challenge.extend(0u8..16);
    golden(
        &challenge,
        AvpRepr::mandatory(V::Challenge(Cow::Owned((0u8..16).collect()))),
        "chal=<16B>",
    );
    golden(
        &[
            0x80, 0x0c, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x10, 0x45, b'b', b'y', b'e',
        ],
        AvpRepr::mandatory(V::Q931CauseCode {
            cause: 16,
            message: 0x45,
            advisory: Some(Cow::Borrowed(b"bye")),
        }),
        "q931=16/69\"bye\"",
    );
    let mut response = vec![0x80, 0x16, 0x00, 0x00, 0x00, 0x0d];
    response.extend([0xab; 16]);
    golden(
        &response,
        AvpRepr::mandatory(V::ChallengeResponse([0xab; 16])),
        "chresp=<16B>",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x01],
        AvpRepr::mandatory(V::BearerType(1)),
        "btype=0x1",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x18, 0x05, 0xf5, 0xe1, 0x00],
        AvpRepr::mandatory(V::TxConnectSpeed(100_000_000)),
        "txspeed=100000000",
    );
    golden(
        &[0x00, 0x08, 0x00, 0x00, 0x00, 0x20, 0x00, 0x07],
        AvpRepr::optional(V::ProxyAuthenId { reserved: 0, id: 7 }),
        "pa_id=7",
    );
    golden(
        &[
            0x80, 0x20, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x05,
            0x00, 0x00, 0x00, 0x06,
        ],
        AvpRepr::mandatory(V::CallErrors {
            reserved: 0,
            crc_errors: 1,
            framing_errors: 2,
            hardware_overruns: 3,
            buffer_overruns: 4,
            timeout_errors: 5,
            alignment_errors: 6,
        }),
        "call_errors=crc:1,framing:2,hw:3,buf:4,timeout:5,align:6",
    );
    golden(
        &[
            0x80, 0x10, 0x00, 0x00, 0x00, 0x23, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00,
            0x00, 0x0a,
        ],
        AvpRepr::mandatory(V::Accm {
            reserved: 0,
            send_accm: 0xffff_ffff,
            receive_accm: 0x0a,
        }),
        "accm=send:0xffffffff,recv:0xa",
    );
    golden(
        &[0x80, 0x0a, 0x00, 0x00, 0x00, 0x24, 0xde, 0xad, 0xbe, 0xef],
        AvpRepr::mandatory(V::RandomVector(Cow::Borrowed(&[0xde, 0xad, 0xbe, 0xef]))),
        "rv=<4B>",
    );
    golden(
        &[0x80, 0x06, 0x00, 0x00, 0x00, 0x27],
        AvpRepr::mandatory(V::SequencingRequired),
        "seqreq",
    );
    golden(
        &[0x00, 0x0a, 0x00, 0x09, 0x00, 0x0c, 0xde, 0xad, 0xbe, 0xef],
        AvpRepr::optional(V::Vendor {
            vendor_id: 9,
            attr_type: 12,
            value: Cow::Borrowed(&[0xde, 0xad, 0xbe, 0xef]),
        }),
        "v9:type12=<4B>",
    );
    golden(
        &[0x80, 0x09, 0x00, 0x00, 0x00, 0x14, 0x01, 0x02, 0x03],
        AvpRepr::mandatory(V::Unknown {
            attr_type: 20,
            value: Cow::Borrowed(&[1, 2, 3]),
        }),
        "t20=<3B>",
    );
    // Empty strings are accepted (lenient), even where the RFC asks for one octet.
    golden(
        &[0x80, 0x06, 0x00, 0x00, 0x00, 0x07],
        AvpRepr::mandatory(V::HostName(Cow::Borrowed(b""))),
        "host=",
    );
}

#[test]
fn reserved_bits_make_an_avp_unrecognized() {
    // §4.1: a reserved bit set means "unrecognized", whatever the type.
    golden(
        &[0x84, 0x0a, 0x00, 0x00, 0x00, 0x07, b'l', b'n', b's', b'1'],
        AvpRepr {
            mandatory: true,
            hidden: false,
            reserved: 1,
            value: AvpValue::Unknown {
                attr_type: 7,
                value: Cow::Borrowed(b"lns1"),
            },
        },
        "t7=<4B>!R1",
    );
    // The wrong length for a Tunnel ID is no error once the AVP is unrecognized.
    let repr = parse(&[0xbc, 0x07, 0x00, 0x00, 0x00, 0x09, 0x01], None).unwrap();
    assert_eq!(repr.reserved, 0x0f);
    assert_eq!(repr.value.avp_type(), None);
    assert_eq!(repr.value.attr_type(), 9);
}

/// Proxy Authen Name "bob", hidden under `UNHIDE` (ciphertext from Python's hashlib).
const HIDDEN_NAME: [u8; 11] = [
    0x40, 0x0b, 0x00, 0x00, 0x00, 0x1e, 0x7c, 0x0d, 0xec, 0x10, 0x1e,
];
/// Assigned Tunnel ID 0x1234, M and H set, hidden under `UNHIDE`.
const HIDDEN_TUNNEL_ID: [u8; 10] = [0xc0, 0x0a, 0x00, 0x00, 0x00, 0x09, 0xd8, 0xc3, 0x8a, 0xb3];

#[test]
fn golden_hidden_avps() {
    let name = AvpRepr {
        mandatory: false,
        hidden: true,
        reserved: 0,
        value: AvpValue::ProxyAuthenName(Cow::Borrowed(b"bob")),
    };
    assert_eq!(parse(&HIDDEN_NAME, Some(&UNHIDE)).unwrap(), name);
    assert_eq!(name.buffer_len(), HIDDEN_NAME.len());
    assert_eq!(emit(&name, Some(&UNHIDE)).unwrap(), HIDDEN_NAME);
    assert_eq!(name.to_string(), "pa_name=bob!H");

    let tid = AvpRepr {
        mandatory: true,
        hidden: true,
        reserved: 0,
        value: AvpValue::AssignedTunnelId(0x1234),
    };
    assert_eq!(parse(&HIDDEN_TUNNEL_ID, Some(&UNHIDE)).unwrap(), tid);
    assert_eq!(emit(&tid, Some(&UNHIDE)).unwrap(), HIDDEN_TUNNEL_ID);
    assert_eq!(tid.to_string(), "tid=4660!H");
}

#[test]
fn hidden_without_secret_stays_raw() {
    let raw = AvpRepr {
        mandatory: false,
        hidden: true,
        reserved: 0,
        value: AvpValue::HiddenRaw {
            vendor_id: 0,
            attr_type: 30,
            ciphertext: Cow::Borrowed(&HIDDEN_NAME[6..]),
        },
    };
    golden(&HIDDEN_NAME, raw.clone(), "pa_name=<enc:5B>!H");
    assert_eq!(raw.value.avp_type(), Some(AvpType::ProxyAuthenName));
    // Re-emitted verbatim: no secret needed, even when one is offered.
    assert_eq!(emit(&raw, Some(&UNHIDE)).unwrap(), HIDDEN_NAME);
}

#[test]
fn hidden_errors() {
    // Wrong secret: the decrypted Original Length points past the value.
    let wrong = Unhide {
        secret: b"not-the-secret",
        random_vector: &RV,
    };
    assert!(matches!(
        parse(&HIDDEN_NAME, Some(&wrong)),
        Err(Error::Hidden {
            avp: "Proxy Authen Name",
            offset: 26,
            ..
        })
    ));
    // A hidden value too short for the Original Length.
    assert!(matches!(
        parse(&[0x40, 0x07, 0x00, 0x00, 0x00, 0x07, 0x00], Some(&UNHIDE)),
        Err(Error::Hidden {
            avp: "Host Name",
            ..
        })
    ));
    // A plaintext of the wrong size is a BadValue, as if it had been sent in the clear.
    let short = AvpRepr {
        mandatory: true,
        hidden: true,
        reserved: 0,
        value: AvpValue::Unknown {
            attr_type: 9,
            value: Cow::Borrowed(&[1, 2, 3]),
        },
    };
    let bytes = emit(&short, Some(&UNHIDE)).unwrap();
    assert_eq!(
        parse(&bytes, Some(&UNHIDE)),
        Err(Error::BadValue(BadValue {
            field: "Assigned Tunnel ID",
            offset: 26,
            reason: "value length must be 2",
        }))
    );
    // The Random Vector is never hidden, either way.
    assert!(matches!(
        parse(&[0xc0, 0x08, 0x00, 0x00, 0x00, 0x24, 0x01, 0x02], None),
        Err(Error::Hidden {
            avp: "Random Vector",
            offset: 20,
            ..
        })
    ));
    let rv = AvpRepr {
        mandatory: true,
        hidden: true,
        reserved: 0,
        value: AvpValue::RandomVector(Cow::Borrowed(&[1, 2])),
    };
    assert!(matches!(
        emit(&rv, Some(&UNHIDE)),
        Err(Error::Hidden {
            avp: "Random Vector",
            ..
        })
    ));
    // Hiding needs a secret.
    let host = AvpRepr {
        mandatory: true,
        hidden: true,
        reserved: 0,
        value: AvpValue::HostName(Cow::Borrowed(b"lac")),
    };
    assert_eq!(
        emit(&host, None),
        Err(Error::Hidden {
            avp: "Host Name",
            offset: 0,
            reason: "no shared secret",
        })
    );
}

#[test]
fn every_fixed_size_value_checks_its_length() {
    use AvpType as T;
    let sizes = [
        (T::MessageType, 2usize),
        (T::ProtocolVersion, 2),
        (T::FramingCapabilities, 4),
        (T::BearerCapabilities, 4),
        (T::TieBreaker, 8),
        (T::FirmwareRevision, 2),
        (T::AssignedTunnelId, 2),
        (T::ReceiveWindowSize, 2),
        (T::ChallengeResponse, 16),
        (T::AssignedSessionId, 2),
        (T::CallSerialNumber, 4),
        (T::MinimumBps, 4),
        (T::MaximumBps, 4),
        (T::BearerType, 4),
        (T::FramingType, 4),
        (T::TxConnectSpeed, 4),
        (T::PhysicalChannelId, 4),
        (T::ProxyAuthenType, 2),
        (T::ProxyAuthenId, 2),
        (T::CallErrors, 26),
        (T::Accm, 10),
        (T::RxConnectSpeed, 4),
        (T::SequencingRequired, 0),
    ];
    for (kind, size) in sizes {
        for len in [size.checked_sub(1), Some(size), Some(size + 1)]
            .into_iter()
            .flatten()
        {
            let mut bytes = vec![0x80, 0x00, 0x00, 0x00];
            bytes[1] = (HEADER_LEN + len) as u8;
            bytes.extend(kind.to_u16().to_be_bytes());
            bytes.extend(vec![0x01; len]);
            let parsed = parse(&bytes, None);
            if len == size {
                let repr = parsed.unwrap();
                assert_eq!(repr.value.avp_type(), Some(kind));
                assert_eq!(emit(&repr, None).unwrap(), bytes, "{kind}");
            } else {
                match parsed {
                    Err(Error::BadValue(BadValue {
                        field,
                        offset: 26,
                        reason,
                    })) => {
                        assert_eq!(field, kind.name());
                        assert!(reason.ends_with(&format!("must be {size}")), "{reason}");
                    }
                    other => panic!("{kind} with {len} octets: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn variable_structures_check_their_minimum() {
    for (kind, bad) in [
        (AvpType::ResultCode, &[0usize, 1, 3][..]),
        (AvpType::Q931CauseCode, &[0, 1, 2]),
    ] {
        for &len in bad {
            let mut bytes = vec![0x80, (HEADER_LEN + len) as u8, 0x00, 0x00];
            bytes.extend(kind.to_u16().to_be_bytes());
            bytes.extend(vec![0x01; len]);
            assert!(
                matches!(
                    parse(&bytes, None),
                    Err(Error::BadValue(BadValue { field, offset: 26, .. })) if field == kind.name()
                ),
                "{kind} with {len} octets"
            );
        }
    }
    // An empty advisory message is absent.
    let repr = parse(
        &[0x80, 0x09, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x10, 0x45],
        None,
    )
    .unwrap();
    assert_eq!(
        repr.value,
        AvpValue::Q931CauseCode {
            cause: 16,
            message: 0x45,
            advisory: None
        }
    );
}

#[test]
fn new_checked_errors_name_field_and_offset() {
    assert_eq!(
        Avp::new_checked(&[0x80, 0x08, 0x00, 0x00, 0x00][..], 12),
        Err(Error::Truncated(Truncated {
            field: "AVP header",
            offset: 12,
            need: 6,
            have: 5,
        }))
    );
    assert_eq!(
        Avp::new_checked(&[0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00][..], 12),
        Err(Error::BadValue(BadValue {
            field: "AVP Length",
            offset: 12,
            reason: "less than the 6-octet AVP header",
        }))
    );
    assert_eq!(
        Avp::new_checked(&[0x80, 0x0a, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05][..], 12),
        Err(Error::Truncated(Truncated {
            field: "AVP Length",
            offset: 12,
            need: 10,
            have: 8,
        }))
    );
    // Length bits above the 10-bit field are flags, not length.
    assert!(Avp::new_checked(&[0xfc, 0x08, 0, 0, 0, 0, 0, 1][..], 0).is_ok());
}

#[test]
fn view_reads_only_its_own_length() {
    let bytes = [0x80, 0x08, 0x00, 0x00, 0x00, 0x09, 0x00, 0x05, 0xff, 0xff];
    let avp = Avp::new_checked(&bytes[..], 0).unwrap();
    assert!(avp.mandatory());
    assert!(!avp.hidden());
    assert_eq!(avp.reserved(), 0);
    assert_eq!(avp.length(), 8);
    assert_eq!(avp.vendor_id(), 0);
    assert_eq!(avp.attr_type(), 9);
    assert_eq!(avp.value(), [0x00, 0x05]);
    assert_eq!(avp.value_slice(), [0x00, 0x05]);
    assert_eq!(
        AvpRepr::parse(&avp, 0, None).unwrap().value,
        AvpValue::AssignedTunnelId(5)
    );
    assert_eq!(avp.into_inner().len(), 10);
}

#[test]
fn setters_write_each_field() {
    let mut buf = [0u8; 9];
    let mut avp = Avp::new_unchecked(&mut buf[..]);
    avp.set_length(0x3ff);
    avp.set_mandatory(true);
    avp.set_hidden(true);
    avp.set_reserved(0x0a);
    avp.set_length(9);
    avp.set_vendor_id(0x1234);
    avp.set_attr_type(0x5678);
    avp.value_mut().copy_from_slice(&[1, 2, 3]);
    assert_eq!(buf, [0xe8, 0x09, 0x12, 0x34, 0x56, 0x78, 1, 2, 3]);
    let mut avp = Avp::new_unchecked(&mut buf[..]);
    avp.set_mandatory(false);
    avp.set_reserved(0);
    avp.set_hidden(false);
    assert_eq!(avp.into_inner()[..2], [0x00, 0x09]);
}

#[test]
fn emit_errors() {
    let orphan_message = AvpRepr::mandatory(AvpValue::ResultCode {
        result: 2,
        error: None,
        message: Some(Cow::Borrowed(b"why")),
    });
    assert!(matches!(
        emit(&orphan_message, None),
        Err(Error::BadValue(BadValue {
            field: "Result Code",
            ..
        }))
    ));

    let host = |len: usize, hidden: bool| AvpRepr {
        mandatory: true,
        hidden,
        reserved: 0,
        value: AvpValue::HostName(Cow::Owned(vec![b'h'; len])),
    };
    assert_eq!(
        emit(&host(MAX_VALUE_LEN, false), None).unwrap().len(),
        MAX_LEN
    );
    assert!(matches!(
        emit(&host(MAX_VALUE_LEN + 1, false), None),
        Err(Error::BadValue(BadValue {
            field: "AVP Length",
            ..
        }))
    ));
    let hidden = emit(&host(MAX_VALUE_LEN - 2, true), Some(&UNHIDE)).unwrap();
    assert_eq!(
        parse(&hidden, Some(&UNHIDE)).unwrap(),
        host(MAX_VALUE_LEN - 2, true)
    );
    assert!(matches!(
        emit(&host(MAX_VALUE_LEN - 1, true), Some(&UNHIDE)),
        Err(Error::BadValue(BadValue {
            field: "AVP Length",
            ..
        }))
    ));

    let mut small = [0u8; 9];
    assert_eq!(
        host(4, false).emit(&mut small, None),
        Err(Error::BufferTooSmall {
            field: "AVP",
            need: 10,
            have: 9,
        })
    );
}

#[test]
fn every_field_shaped_attribute_has_its_variant() {
    for kind in AvpType::ALL {
        let field = match kind.shape() {
            Shape::U16 => Field::U16(0x1234),
            Shape::U32 | Shape::Flags => Field::U32(0x1234_5678),
            Shape::Text | Shape::Octets => Field::Octets(Cow::Borrowed(b"ab")),
            Shape::Structured => {
                for field in [
                    Field::U16(1),
                    Field::U32(1),
                    Field::Octets(Cow::Borrowed(b"ab")),
                ] {
                    assert_eq!(AvpValue::from_field(kind, field), None, "{kind:?}");
                }
                continue;
            }
        };
        let value = AvpValue::from_field(kind, field.clone());
        let value = value.unwrap_or_else(|| panic!("{kind:?} has no variant for its shape"));
        assert_eq!(value.field(), Some((kind, field)), "{kind:?}");
        assert_eq!(value.avp_type(), Some(kind));
    }
}

#[test]
fn avp_types_are_consistent() {
    let mut codes: Vec<u16> = AvpType::ALL.iter().map(|kind| kind.to_u16()).collect();
    assert_eq!(codes, (0..=39).filter(|&n| n != 20).collect::<Vec<_>>());
    codes.dedup();
    assert_eq!(codes.len(), 39);
    for kind in AvpType::ALL {
        assert_eq!(AvpType::from_u16(kind.to_u16()), Some(kind));
        assert_eq!(
            AvpType::ALL
                .iter()
                .filter(|k| k.short() == kind.short())
                .count(),
            1
        );
        assert_eq!(
            AvpType::ALL
                .iter()
                .filter(|k| k.name() == kind.name())
                .count(),
            1
        );
    }
    assert_eq!(AvpType::from_u16(20), None);
    assert_eq!(AvpType::from_u16(40), None);
    assert_eq!(AvpType::ChallengeResponse.name(), "Challenge Response");
    assert_eq!(AvpType::ChallengeResponse.to_u16(), 13);
    assert_eq!(AvpType::HostName.to_string(), "Host Name");
}

#[test]
fn json_form() {
    use AvpValue as V;
    let json = |repr: AvpRepr| serde_json::to_value(&repr).unwrap();
    assert_eq!(
        json(AvpRepr::mandatory(V::HostName(Cow::Borrowed(b"lns1")))),
        json!({"type": 7, "name": "Host Name", "mandatory": true, "hidden": false,
               "vendor_id": 0, "value": "lns1"})
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::MessageType(MessageType::Sccrp)))["value"],
        "SCCRP"
    );
    assert_eq!(json(AvpRepr::mandatory(V::AssignedTunnelId(5)))["value"], 5);
    assert_eq!(
        json(AvpRepr::mandatory(V::FramingCapabilities(3)))["value"],
        3
    );
    assert_eq!(
        json(AvpRepr::optional(V::TieBreaker([
            0, 1, 2, 3, 0xfc, 0xfd, 0xfe, 0xff
        ])))["value"],
        "00010203fcfdfeff"
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::Challenge(Cow::Borrowed(&[
            0xab, 0x01
        ]))))["value"],
        "ab01"
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::ResultCode {
            result: 2,
            error: Some(6),
            message: Some(Cow::Borrowed(b"bad \xff")),
        }))["value"],
        json!({"result": 2, "error": 6, "message": "bad \u{fffd}"})
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::ResultCode {
            result: 1,
            error: None,
            message: None,
        }))["value"],
        json!({"result": 1, "error": null, "message": null})
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::ProtocolVersion {
            version: 1,
            revision: 0,
        }))["value"],
        json!({"version": 1, "revision": 0})
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::Q931CauseCode {
            cause: 16,
            message: 69,
            advisory: None,
        }))["value"],
        json!({"cause": 16, "message": 69, "advisory": null})
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::Accm {
            reserved: 0,
            send_accm: 1,
            receive_accm: 2,
        }))["value"],
        json!({"reserved": 0, "send_accm": 1, "receive_accm": 2})
    );
    assert_eq!(
        json(AvpRepr::optional(V::ProxyAuthenId { reserved: 0, id: 9 }))["value"],
        json!({"reserved": 0, "id": 9})
    );
    assert_eq!(
        serde_json::to_string(&AvpRepr::mandatory(V::CallErrors {
            reserved: 0,
            crc_errors: 1,
            framing_errors: 2,
            hardware_overruns: 3,
            buffer_overruns: 4,
            timeout_errors: 5,
            alignment_errors: 6,
        }))
        .unwrap(),
        "{\"type\":34,\"name\":\"Call Errors\",\"mandatory\":true,\"hidden\":false,\
         \"vendor_id\":0,\"value\":{\"reserved\":0,\"crc_errors\":1,\"framing_errors\":2,\
         \"hardware_overruns\":3,\"buffer_overruns\":4,\"timeout_errors\":5,\
         \"alignment_errors\":6}}"
    );
    assert_eq!(
        json(AvpRepr::mandatory(V::SequencingRequired))["value"],
        serde_json::Value::Null
    );
    assert_eq!(
        json(parse(&HIDDEN_NAME, None).unwrap()),
        json!({"type": 30, "name": "Proxy Authen Name", "mandatory": false, "hidden": true,
               "vendor_id": 0, "value": {"ciphertext": "7c0dec101e"}})
    );
    assert_eq!(
        json(AvpRepr {
            mandatory: false,
            hidden: false,
            reserved: 3,
            value: V::Vendor {
                vendor_id: 9,
                attr_type: 1,
                value: Cow::Borrowed(&[0xff]),
            },
        }),
        json!({"type": 1, "name": "vendor-specific", "mandatory": false, "hidden": false,
               "vendor_id": 9, "value": "ff", "reserved": 3})
    );
    assert_eq!(
        json(AvpRepr::optional(V::Unknown {
            attr_type: 20,
            value: Cow::Borrowed(&[]),
        }))["name"],
        "unassigned"
    );
}

#[test]
fn unhide_debug_keeps_the_secret_out() {
    let debug = format!("{UNHIDE:?}");
    assert!(!debug.contains("tunnel-secret"), "{debug}");
    assert!(
        debug.contains("000102030405060708090a0b0c0d0e0f"),
        "{debug}"
    );
}

proptest! {
    #[test]
    fn a_value_has_a_field_exactly_when_its_shape_says(value in strategies::typed_value()) {
        let kind = value.avp_type().unwrap();
        prop_assert_eq!(value.field().is_some(), kind.shape() != Shape::Structured);
    }

    #[test]
    fn parse_inverts_emit(repr in strategies::avp_repr()) {
        let unhide = strategies::unhide();
        let bytes = emit(&repr, Some(&unhide)).unwrap();
        let unhide = match repr.value {
            AvpValue::HiddenRaw { .. } => None,
            _ => Some(&unhide),
        };
        // The view is bounded by Length, not by the buffer: give it trailing bytes.
        let mut longer = bytes.clone();
        longer.extend([0xee; 5]);
        let avp = Avp::new_checked(&longer[..], 40).unwrap();
        prop_assert_eq!(usize::from(avp.length()), bytes.len());
        prop_assert_eq!(AvpRepr::parse(&avp, 40, unhide).unwrap(), repr);
    }

    #[test]
    fn one_line_form_is_one_token(repr in strategies::avp_repr()) {
        let line = repr.to_string();
        prop_assert!(!line.is_empty());
        prop_assert!(line.chars().all(|c| c.is_ascii_graphic()), "{}", line);
        let json = serde_json::to_value(&repr).unwrap();
        prop_assert_eq!(&json["type"], &json!(repr.value.attr_type()));
    }

    #[test]
    fn reemit_of_a_parsed_avp_is_identical(
        flags in 0u8..64,
        vendor_id in prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
        attr_type in 0u16..45,
        value in vec(any::<u8>(), 0..40),
    ) {
        let len = HEADER_LEN + value.len();
        let mut bytes = vec![(flags << 2) | (len >> 8) as u8, len as u8];
        bytes.extend(vendor_id.to_be_bytes());
        bytes.extend(attr_type.to_be_bytes());
        bytes.extend(&value);
        // In the clear (or kept as ciphertext) the bytes come back exactly.
        if let Ok(repr) = parse(&bytes, None) {
            prop_assert_eq!(emit(&repr, None).unwrap(), bytes.clone());
        }
        // Unhidden, padding is not kept, but the repr survives a second trip.
        if let Ok(repr) = parse(&bytes, Some(&UNHIDE)) {
            let again = emit(&repr, Some(&UNHIDE)).unwrap();
            prop_assert_eq!(parse(&again, Some(&UNHIDE)).unwrap(), repr);
        }
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..80),
        offset in any::<usize>(),
        with_secret in any::<bool>(),
    ) {
        let unhide = with_secret.then_some(UNHIDE);
        if let Ok(avp) = Avp::new_checked(&bytes[..], offset) {
            let _ = (avp.mandatory(), avp.hidden(), avp.reserved(), avp.value());
            if let Ok(repr) = AvpRepr::parse(&avp, offset, unhide.as_ref()) {
                let _ = repr.to_string();
                let _ = serde_json::to_string(&repr).unwrap();
            }
        }
    }
}
