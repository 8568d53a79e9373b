//! Just enough PPP (RFC 1661) to keep a session honest: LCP Echo-Request and Echo-Reply
//! (§5.8) inside L2TP data messages, with the HDLC address and control octets that L2TP carries
//! (RFC 2661 §5.4: FF 03 then the protocol).

use super::PROTOCOL_LCP;

const ADDRESS_CONTROL: [u8; 2] = [0xff, 0x03];
const ECHO_REQUEST: u8 = 9;
const ECHO_REPLY: u8 = 10;
/// Address/control, protocol, code, identifier, length, magic number.
const ECHO_LEN: usize = 2 + 2 + 4 + 4;

/// An LCP echo as it travels in an L2TP data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcpEcho {
    pub reply: bool,
    pub identifier: u8,
    pub magic: u32,
}

impl LcpEcho {
    pub fn request(identifier: u8, magic: u32) -> LcpEcho {
        LcpEcho {
            reply: false,
            identifier,
            magic,
        }
    }

    /// Reads an LCP Echo-Request or Echo-Reply; anything else (other protocols, other LCP
    /// codes, short frames) is `None`. The address/control octets may be absent (ACFC).
    pub fn parse(frame: &[u8]) -> Option<LcpEcho> {
        let frame = frame.strip_prefix(&ADDRESS_CONTROL[..]).unwrap_or(frame);
        let (protocol, rest) = frame.split_first_chunk::<2>()?;
        if u16::from_be_bytes(*protocol) != PROTOCOL_LCP {
            return None;
        }
        let (&[code, identifier, len_hi, len_lo], rest) = rest.split_first_chunk::<4>()?;
        let length = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let reply = match code {
            ECHO_REQUEST => false,
            ECHO_REPLY => true,
            _ => return None,
        };
        // The LCP length covers code..data and must hold the magic number.
        if length < 8 || length > rest.len() + 4 {
            return None;
        }
        let magic = rest.first_chunk::<4>().map(|m| u32::from_be_bytes(*m))?;
        Some(LcpEcho {
            reply,
            identifier,
            magic,
        })
    }

    /// The frame, address/control octets included.
    pub fn to_frame(&self) -> [u8; ECHO_LEN] {
        let mut frame = [0u8; ECHO_LEN];
        frame[..2].copy_from_slice(&ADDRESS_CONTROL);
        frame[2..4].copy_from_slice(&PROTOCOL_LCP.to_be_bytes());
        frame[4] = if self.reply { ECHO_REPLY } else { ECHO_REQUEST };
        frame[5] = self.identifier;
        frame[6..8].copy_from_slice(&8u16.to_be_bytes());
        frame[8..12].copy_from_slice(&self.magic.to_be_bytes());
        frame
    }

    /// The Echo-Reply to this request, with our own magic number (§5.8).
    pub fn reply_with(&self, our_magic: u32) -> LcpEcho {
        LcpEcho {
            reply: true,
            identifier: self.identifier,
            magic: our_magic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_echo_request() {
        let frame = LcpEcho::request(7, 0x01020304).to_frame();
        assert_eq!(
            frame,
            [0xff, 0x03, 0xc0, 0x21, 0x09, 0x07, 0x00, 0x08, 0x01, 0x02, 0x03, 0x04]
        );
        assert_eq!(
            LcpEcho::parse(&frame),
            Some(LcpEcho::request(7, 0x01020304))
        );
        // Without address/control (ACFC) it still reads.
        assert_eq!(
            LcpEcho::parse(&frame[2..]),
            Some(LcpEcho::request(7, 0x01020304))
        );
    }

    #[test]
    fn reply_keeps_identifier() {
        let reply = LcpEcho::request(9, 1).reply_with(2);
        assert_eq!(
            reply,
            LcpEcho {
                reply: true,
                identifier: 9,
                magic: 2
            }
        );
        assert_eq!(LcpEcho::parse(&reply.to_frame()), Some(reply));
    }

    #[test]
    fn other_frames_are_not_echoes() {
        // LCP Configure-Request, IPCP, short frames.
        assert_eq!(
            LcpEcho::parse(&[0xff, 0x03, 0xc0, 0x21, 0x01, 1, 0, 4]),
            None
        );
        assert_eq!(
            LcpEcho::parse(&[0xff, 0x03, 0x80, 0x21, 0x09, 1, 0, 8, 0, 0, 0, 0]),
            None
        );
        assert_eq!(LcpEcho::parse(&[0xff, 0x03, 0xc0]), None);
        assert_eq!(
            LcpEcho::parse(&[0xff, 0x03, 0xc0, 0x21, 0x09, 1, 0, 8, 0, 0]),
            None
        );
    }

    proptest! {
        #[test]
        fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = LcpEcho::parse(&bytes);
        }
    }
}
