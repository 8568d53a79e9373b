//! AVP hiding (RFC 2661 §4.3): the Hidden AVP Subformat (2-octet original length, the value)
//! XORed with an MD5 key stream seeded by the attribute type, the shared secret and the
//! message's Random Vector.
//!
//! ```text
//! b1 = MD5(type ‖ secret ‖ RV)    c1 = p1 xor b1
//! bi = MD5(secret ‖ c(i-1))       ci = pi xor bi
//! ```

use md5::{Digest, Md5};

/// Octets per key-stream block (one MD5 digest).
const BLOCK: usize = 16;

/// Size of the Original Length field that starts the subformat.
pub const LENGTH_LEN: usize = 2;

/// Appends the hidden form of `value` to `out`: Original Length + value, encrypted, unpadded.
///
/// Values longer than 65535 octets cannot be described by the 2-octet length, so only their
/// first 65535 octets are hidden; callers bound AVP values far below that (1017 octets).
pub fn hide(attr_type: u16, secret: &[u8], random_vector: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    let value = value.get(..usize::from(len)).unwrap_or(value);
    let start = out.len();
    out.reserve(LENGTH_LEN + value.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    if let Some(subformat) = out.get_mut(start..) {
        hide_in_place(attr_type, secret, random_vector, subformat);
    }
}

/// Encrypts a subformat (Original Length + value + optional padding) where it lies, so an
/// emitter can hide straight into its output buffer without allocating.
pub fn hide_in_place(attr_type: u16, secret: &[u8], random_vector: &[u8], subformat: &mut [u8]) {
    let mut key = first_key(attr_type, secret, random_vector);
    for chunk in subformat.chunks_mut(BLOCK) {
        xor(chunk, &key);
        // The next key hashes this chunk's ciphertext; only the last chunk can be short,
        // and nothing follows it.
        key = next_key(secret, chunk);
    }
}

/// Recovers the original value from a hidden Attribute Value, dropping any padding.
/// Fails (never panics) if the ciphertext cannot hold the length it announces.
pub fn unhide(
    attr_type: u16,
    secret: &[u8],
    random_vector: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    if ciphertext.len() < LENGTH_LEN {
        return Err("shorter than the 2-octet Original Length");
    }
    let mut plain = ciphertext.to_vec();
    let mut key = first_key(attr_type, secret, random_vector);
    for (out, cipher) in plain.chunks_mut(BLOCK).zip(ciphertext.chunks(BLOCK)) {
        xor(out, &key);
        key = next_key(secret, cipher);
    }
    let original = match plain.get(..LENGTH_LEN) {
        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
        _ => return Err("shorter than the 2-octet Original Length"),
    };
    let end = LENGTH_LEN.saturating_add(original);
    if end > plain.len() {
        return Err("Original Length exceeds the hidden value (wrong secret or Random Vector?)");
    }
    plain.truncate(end);
    plain.drain(..LENGTH_LEN);
    Ok(plain)
}

fn first_key(attr_type: u16, secret: &[u8], random_vector: &[u8]) -> [u8; BLOCK] {
    let mut md5 = Md5::new();
    md5.update(attr_type.to_be_bytes());
    md5.update(secret);
    md5.update(random_vector);
    md5.finalize().into()
}

fn next_key(secret: &[u8], previous_cipher: &[u8]) -> [u8; BLOCK] {
    let mut md5 = Md5::new();
    md5.update(secret);
    md5.update(previous_cipher);
    md5.finalize().into()
}

/// XORs `chunk` with the leading octets of `key`; a short last chunk uses only what it has.
fn xor(chunk: &mut [u8], key: &[u8; BLOCK]) {
    for (byte, k) in chunk.iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"tunnel-secret";
    const RV: [u8; 16] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];

    fn hidden(attr_type: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        hide(attr_type, SECRET, &RV, value, &mut out);
        out
    }

    // Golden vectors from an independent Python hashlib computation of the §4.3 formulas:
    // one subformat shorter than a block, one spanning three blocks (the last one short).
    #[test]
    fn golden_short_value() {
        const CIPHER: [u8; 7] = [0x7c, 0x0b, 0xef, 0x13, 0x15, 0x5b, 0x02];
        assert_eq!(hidden(30, b"alice"), CIPHER);
        assert_eq!(unhide(30, SECRET, &RV, &CIPHER).unwrap(), b"alice");
    }

    #[test]
    fn golden_three_blocks() {
        const PLAIN: &[u8] = b"a password long enough for three blocks";
        const CIPHER: [u8; 41] = [
            0x2f, 0x1e, 0xa1, 0xa8, 0xb8, 0x7e, 0x6c, 0x22, 0xce, 0xf6, 0xa8, 0xe7, 0xb4, 0xc5,
            0x81, 0x86, 0x6d, 0xd4, 0xef, 0x66, 0x31, 0x70, 0x66, 0x5f, 0x0d, 0xc7, 0x4e, 0x6e,
            0x0c, 0x31, 0x7d, 0x94, 0xdc, 0xe5, 0xc2, 0xbe, 0xbf, 0xed, 0x89, 0xb6, 0x9a,
        ];
        assert_eq!(hidden(33, PLAIN), CIPHER);
        assert_eq!(unhide(33, SECRET, &RV, &CIPHER).unwrap(), PLAIN);
    }

    #[test]
    fn empty_value_hides_to_two_octets() {
        let cipher = hidden(7, b"");
        assert_eq!(cipher.len(), LENGTH_LEN);
        assert_eq!(unhide(7, SECRET, &RV, &cipher).unwrap(), b"");
    }

    #[test]
    fn padding_is_dropped() {
        // A sender may pad the subformat to hide the value's length (§4.3).
        let mut subformat = vec![0x00, 0x03, b'a', b'b', b'c', 0xee, 0xee, 0xee];
        hide_in_place(9, SECRET, &RV, &mut subformat);
        assert_eq!(unhide(9, SECRET, &RV, &subformat).unwrap(), b"abc");
    }

    #[test]
    fn too_short_and_overlong_are_errors() {
        assert!(unhide(9, SECRET, &RV, &[]).is_err());
        assert!(unhide(9, SECRET, &RV, &[0x12]).is_err());
        // Original Length 0xffff with nothing behind it.
        let mut subformat = vec![0xff, 0xff, 0x01];
        hide_in_place(9, SECRET, &RV, &mut subformat);
        assert!(unhide(9, SECRET, &RV, &subformat).is_err());
    }

    #[test]
    fn hiding_depends_on_type_secret_and_vector() {
        let base = hidden(30, b"alice");
        assert_ne!(base, hidden(31, b"alice"));
        let mut other = Vec::new();
        hide(30, b"other", &RV, b"alice", &mut other);
        assert_ne!(base, other);
        other.clear();
        hide(30, SECRET, &RV[1..], b"alice", &mut other);
        assert_ne!(base, other);
    }

    #[test]
    fn hide_appends() {
        let mut out = vec![0xaa, 0xbb];
        hide(30, SECRET, &RV, b"alice", &mut out);
        assert_eq!(out[..2], [0xaa, 0xbb]);
        assert_eq!(out[2..], hidden(30, b"alice"));
    }

    proptest! {
        #[test]
        fn roundtrip(
            attr_type in any::<u16>(),
            secret in proptest::collection::vec(any::<u8>(), 0..40),
            rv in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut out = Vec::new();
            hide(attr_type, &secret, &rv, &value, &mut out);
            prop_assert_eq!(out.len(), LENGTH_LEN + value.len());
            prop_assert_eq!(unhide(attr_type, &secret, &rv, &out).unwrap(), value);
        }

        #[test]
        fn padded_roundtrip(
            value in proptest::collection::vec(any::<u8>(), 0..100),
            padding in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut subformat = (value.len() as u16).to_be_bytes().to_vec();
            subformat.extend_from_slice(&value);
            subformat.extend_from_slice(&padding);
            hide_in_place(12, SECRET, &RV, &mut subformat);
            prop_assert_eq!(unhide(12, SECRET, &RV, &subformat).unwrap(), value);
        }

        #[test]
        fn unhide_never_panics(
            attr_type in any::<u16>(),
            secret in proptest::collection::vec(any::<u8>(), 0..20),
            rv in proptest::collection::vec(any::<u8>(), 0..20),
            cipher in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            if let Ok(plain) = unhide(attr_type, &secret, &rv, &cipher) {
                prop_assert!(plain.len() + LENGTH_LEN <= cipher.len());
            }
        }
    }
}
