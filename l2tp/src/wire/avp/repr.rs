//! `AvpRepr`: one AVP's flags and typed value, parsed from and emitted to the wire, with
//! hiding (§4.3) applied when a secret is at hand.

use crate::malformed::BadValue;
use std::borrow::Cow;

use super::{avp_name, Avp, AvpType, AvpValue, HEADER_LEN, MAX_LEN, RANDOM_VECTOR_TYPE};
use crate::wire::hidden;
use crate::wire::{Error, Result};

/// The shared secret and the Random Vector in force, to unhide on parse or hide on emit. Its
/// `Debug` (in `wire::format`) keeps the secret out of logs.
#[derive(Clone, Copy)]
pub struct Unhide<'s> {
    pub secret: &'s [u8],
    pub random_vector: &'s [u8],
}

/// One AVP: header flags plus the typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvpRepr<'a> {
    pub mandatory: bool,
    /// Travels hidden (§4.3). Always true for `AvpValue::HiddenRaw`.
    pub hidden: bool,
    /// The four reserved bits; non-zero makes a vendor-0 AVP `Unknown` on parse.
    pub reserved: u8,
    pub value: AvpValue<'a>,
}

impl<'a> AvpRepr<'a> {
    /// An AVP with the M bit set, in the clear: the receiver must understand it (§4.1).
    pub fn mandatory(value: AvpValue<'a>) -> AvpRepr<'a> {
        AvpRepr {
            mandatory: true,
            hidden: false,
            reserved: 0,
            value,
        }
    }

    /// An AVP with the M bit clear, in the clear: a receiver that does not know it skips it.
    pub fn optional(value: AvpValue<'a>) -> AvpRepr<'a> {
        AvpRepr {
            mandatory: false,
            ..AvpRepr::mandatory(value)
        }
    }

    /// Parses one AVP. `offset` is where it starts in the message (for errors). A hidden AVP is
    /// unhidden when `unhide` is given, and kept as `HiddenRaw` otherwise.
    pub fn parse(
        avp: &Avp<&'a [u8]>,
        offset: usize,
        unhide: Option<&Unhide>,
    ) -> Result<AvpRepr<'a>> {
        avp.check_len(offset)?;
        let vendor_id = avp.vendor_id();
        let attr_type = avp.attr_type();
        let reserved = avp.reserved();
        let at = offset.saturating_add(HEADER_LEN);
        let raw = avp.value_slice();
        let value = if !avp.hidden() {
            AvpValue::parse(vendor_id, attr_type, reserved, raw, at)?
        } else if vendor_id == 0 && attr_type == RANDOM_VECTOR_TYPE {
            return Err(Error::Hidden {
                avp: AvpType::RandomVector.name(),
                offset,
                reason: "the Random Vector AVP must not be hidden",
            });
        } else if let Some(unhide) = unhide {
            let plain = hidden::unhide(attr_type, unhide.secret, unhide.random_vector, raw)
                .map_err(|reason| Error::Hidden {
                    avp: avp_name(vendor_id, attr_type),
                    offset: at,
                    reason,
                })?;
            AvpValue::parse(vendor_id, attr_type, reserved, &plain, at)?.into_owned()
        } else {
            AvpValue::HiddenRaw {
                vendor_id,
                attr_type,
                ciphertext: Cow::Borrowed(raw),
            }
        };
        Ok(AvpRepr {
            mandatory: avp.mandatory(),
            hidden: avp.hidden(),
            reserved,
            value,
        })
    }

    /// Whether the emitted value is encrypted here (as opposed to already-hidden `HiddenRaw`).
    fn hides(&self) -> bool {
        self.hidden && !matches!(self.value, AvpValue::HiddenRaw { .. })
    }

    /// Octets `emit` writes: header, plus the value, plus the Original Length when hiding.
    pub fn buffer_len(&self) -> usize {
        let subformat = if self.hides() { hidden::LENGTH_LEN } else { 0 };
        HEADER_LEN + subformat + self.value.value_len()
    }

    /// Writes the AVP at the start of `buf` and returns its length. Hidden values are hidden
    /// with `hide`; `HiddenRaw` goes out as it came in.
    pub fn emit(&self, buf: &mut [u8], hide: Option<&Unhide>) -> Result<usize> {
        let vendor_id = self.value.vendor_id();
        let attr_type = self.value.attr_type();
        if let AvpValue::ResultCode {
            error: None,
            message: Some(_),
            ..
        } = self.value
        {
            return Err(Error::BadValue(BadValue {
                field: AvpType::ResultCode.name(),
                offset: HEADER_LEN,
                reason: "an Error Message needs an Error Code",
            }));
        }
        let on_wire_hidden = self.hidden || matches!(self.value, AvpValue::HiddenRaw { .. });
        if on_wire_hidden && vendor_id == 0 && attr_type == RANDOM_VECTOR_TYPE {
            return Err(Error::Hidden {
                avp: AvpType::RandomVector.name(),
                offset: 0,
                reason: "the Random Vector AVP must not be hidden",
            });
        }
        let len = self.buffer_len();
        if len > MAX_LEN {
            return Err(Error::BadValue(BadValue {
                field: "AVP Length",
                offset: 0,
                reason: "value longer than 1017 octets (1015 when hidden)",
            }));
        }
        let hide = match (self.hides(), hide) {
            (false, _) => None,
            (true, Some(hide)) => Some(hide),
            (true, None) => {
                return Err(Error::Hidden {
                    avp: avp_name(vendor_id, attr_type),
                    offset: 0,
                    reason: "no shared secret",
                })
            }
        };
        let have = buf.len();
        let Some(out) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall {
                field: "AVP",
                need: len,
                have,
            });
        };
        let mut avp = Avp::new_unchecked(&mut *out);
        avp.set_length(len as u16); // ≤ MAX_LEN, checked above
        avp.set_mandatory(self.mandatory);
        avp.set_hidden(on_wire_hidden);
        avp.set_reserved(self.reserved);
        avp.set_vendor_id(vendor_id);
        avp.set_attr_type(attr_type);
        let value = avp.value_mut();
        match hide {
            None => self.value.write(value),
            Some(hide) => {
                let (length, plain) = value.split_at_mut(hidden::LENGTH_LEN);
                length.copy_from_slice(&(plain.len() as u16).to_be_bytes()); // < MAX_LEN
                self.value.write(plain);
                hidden::hide_in_place(attr_type, hide.secret, hide.random_vector, value);
            }
        }
        Ok(len)
    }

    pub fn into_owned(self) -> AvpRepr<'static> {
        AvpRepr {
            mandatory: self.mandatory,
            hidden: self.hidden,
            reserved: self.reserved,
            value: self.value.into_owned(),
        }
    }
}
