//! Byte layouts only: zerocopy views and allocation-free encoders for every
//! protocol tokex speaks. Never panics on input; no I/O.
//!
//! - [`soupbin`]: SoupBinTCP 3.0 packets and the TCP stream reassembler.
//! - [`ouch`]: OUCH 4.2 order-entry messages, inbound and outbound.
//! - [`itch`]: ITCH 5.0 market-data messages.
//! - [`moldudp64`]: MoldUDP64 packets (header, message blocks, builder).
//! - [`ethernet`]: Ethernet II / IPv4 / UDP headers for AF_XDP frames.
//!
//! Views are `#[repr(C)]` structs of byte arrays and big-endian integers
//! (`zerocopy::network_endian`), so a frame is read in place at any
//! alignment; their length is checked once when the view is made and every
//! accessor after that is infallible. Encoders write into a caller's buffer
//! and return the number of bytes written.

/// Declares a fixed-size wire message: a zerocopy struct of the given
/// length with a checked `view` constructor and a `write` encoder.
macro_rules! wire_struct {
    ($(#[$m:meta])* $name:ident, $len:expr, { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable, zerocopy::Unaligned)]
        #[repr(C)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $len);
        impl $name {
            /// Bytes on the wire.
            pub const LEN: usize = $len;
            /// A view of exactly `Self::LEN` bytes.
            #[inline]
            pub fn view(b: &[u8]) -> Result<&$name, $crate::wire::DecodeError> {
                // One length check (zerocopy's); the error is refined off the hot path.
                <$name as zerocopy::FromBytes>::ref_from_bytes(b).map_err(|_| {
                    if b.len() < $len {
                        $crate::wire::DecodeError::TooShort { needed: $len, got: b.len() }
                    } else {
                        $crate::wire::DecodeError::BadLength(b.len())
                    }
                })
            }
            /// Writes the message to the front of `out`.
            #[inline]
            pub fn write(&self, out: &mut [u8]) -> Result<usize, $crate::wire::EncodeError> {
                $crate::wire::put(out, zerocopy::IntoBytes::as_bytes(self))
            }
        }
    };
}

pub mod ethernet;
pub mod itch;
pub mod itch_dispatch;
pub mod moldudp64;
pub mod ouch;
pub mod soupbin;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the message or header needs.
    #[error("too short: {needed} bytes needed, {got} available")]
    TooShort { needed: usize, got: usize },
    /// A message type this protocol does not define (or tokex does not accept).
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A length field that disagrees with the message type or the buffer.
    #[error("bad length {0}")]
    BadLength(usize),
    /// A field whose value is not allowed.
    #[error("bad value in field {0}")]
    BadField(&'static str),
}

/// Why an encoder could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("buffer too small: {needed} bytes needed, {got} available")]
    BufferTooSmall { needed: usize, got: usize },
    #[error("value does not fit field {0}")]
    FieldOverflow(&'static str),
}

/// Checks that `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn need(buf: &[u8], needed: usize) -> Result<(), DecodeError> {
    if buf.len() < needed {
        Err(DecodeError::TooShort {
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Copies `bytes` to the front of `out`, returning the length written.
#[inline]
pub(crate) fn put(out: &mut [u8], bytes: &[u8]) -> Result<usize, EncodeError> {
    let got = out.len();
    let dst = out
        .get_mut(..bytes.len())
        .ok_or(EncodeError::BufferTooSmall {
            needed: bytes.len(),
            got,
        })?;
    dst.copy_from_slice(bytes);
    Ok(bytes.len())
}

/// An alpha field padded on the right with spaces (`"ab"` -> `b"ab    "`).
/// Longer text is an error.
pub fn alpha_right<const N: usize>(s: &[u8]) -> Result<[u8; N], EncodeError> {
    if s.len() > N {
        return Err(EncodeError::FieldOverflow("alpha"));
    }
    let mut out = [b' '; N];
    out[..s.len()].copy_from_slice(s);
    Ok(out)
}

/// An alpha field padded on the left with spaces (`"ab"` -> `b"    ab"`).
pub fn alpha_left<const N: usize>(s: &[u8]) -> Result<[u8; N], EncodeError> {
    if s.len() > N {
        return Err(EncodeError::FieldOverflow("alpha"));
    }
    let mut out = [b' '; N];
    out[N - s.len()..].copy_from_slice(s);
    Ok(out)
}

/// An alpha field without its padding (spaces on either side).
pub fn trim(field: &[u8]) -> &[u8] {
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    &field[start..end]
}

/// A 48-bit big-endian integer (ITCH timestamps).
#[inline]
pub fn u48(b: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Writes the low 48 bits of `v` big-endian.
#[inline]
pub fn to_u48(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_fields_pad_and_trim() {
        assert_eq!(&alpha_right::<6>(b"ab").unwrap(), b"ab    ");
        assert_eq!(&alpha_left::<6>(b"ab").unwrap(), b"    ab");
        assert_eq!(trim(b"  ab  "), b"ab");
        assert_eq!(trim(b"      "), b"");
        assert!(alpha_right::<2>(b"abc").is_err());
    }

    #[test]
    fn u48_round_trips() {
        for v in [0u64, 1, 0x1234_5678_9abc, (1 << 48) - 1] {
            assert_eq!(u48(&to_u48(v)), v);
        }
    }
}
