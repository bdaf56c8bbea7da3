//! On-disk framing of one log record.
//!
//! Every record is `[len: u32 LE][crc32c: u32 LE][index: u64 LE][payload: len bytes]`. The CRC
//! covers the length field, the index and the payload, so a torn or bit-flipped length is caught
//! just like a damaged payload. This file only encodes and checks frames; deciding what a bad
//! frame means (torn tail or corruption) is recovery's job in `segment.rs` and `mod.rs`.

use crate::error::{Error, Result};

/// Size of the fixed header in front of every payload.
pub const HEADER_SIZE_BYTES: usize = 16;

/// Largest payload a record may carry. Larger appends are refused with `InvalidArgument`, and a
/// header claiming more is treated as damage during recovery.
pub const MAX_PAYLOAD_SIZE_BYTES: usize = 256 << 20;

/// The parsed fixed-size header of a frame. Parsing never fails; `check` decides validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub payload_len_bytes: u32,
    pub crc: u32,
    pub index: u64,
}

/// Why a frame could not be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header, or than the header says the payload needs.
    Truncated,
    /// The length field exceeds `MAX_PAYLOAD_SIZE_BYTES`.
    TooLong,
    /// The checksum does not match the bytes.
    Checksum,
}

impl FrameError {
    pub fn describe(self) -> &'static str {
        match self {
            FrameError::Truncated => "record truncated",
            FrameError::TooLong => "record length over the maximum",
            FrameError::Checksum => "record checksum mismatch",
        }
    }
}

impl Header {
    /// Reads a header from the first `HEADER_SIZE_BYTES` of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let len = bytes.get(0..4)?;
        let crc = bytes.get(4..8)?;
        let index = bytes.get(8..16)?;
        Some(Header {
            payload_len_bytes: u32::from_le_bytes(len.try_into().ok()?),
            crc: u32::from_le_bytes(crc.try_into().ok()?),
            index: u64::from_le_bytes(index.try_into().ok()?),
        })
    }

    /// Whole frame size (header plus payload) this header announces.
    pub fn frame_size_bytes(&self) -> u64 {
        HEADER_SIZE_BYTES as u64 + u64::from(self.payload_len_bytes)
    }

    /// Checks the length bound, then the checksum against `payload`.
    pub fn check(&self, payload: &[u8]) -> Result<(), FrameError> {
        if self.payload_len_bytes as usize > MAX_PAYLOAD_SIZE_BYTES {
            return Err(FrameError::TooLong);
        }
        if payload.len() != self.payload_len_bytes as usize {
            return Err(FrameError::Truncated);
        }
        if checksum(self.payload_len_bytes, self.index, payload) != self.crc {
            return Err(FrameError::Checksum);
        }
        Ok(())
    }
}

/// Frame size in bytes for a payload of `payload_len_bytes`.
#[cfg(test)]
pub fn frame_size_bytes(payload_len_bytes: usize) -> u64 {
    HEADER_SIZE_BYTES as u64 + payload_len_bytes as u64
}

/// Refuses payloads that cannot be framed.
pub fn check_payload_size(index: u64, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_PAYLOAD_SIZE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "log record {index} is {} bytes, over the {MAX_PAYLOAD_SIZE_BYTES}-byte maximum",
            payload.len()
        )));
    }
    Ok(())
}

/// Appends the frame for (`index`, `payload`) to `buf`.
pub fn encode(buf: &mut Vec<u8>, index: u64, payload: &[u8]) -> Result<()> {
    check_payload_size(index, payload)?;
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::InvalidArgument(format!("log record {index} is too large")))?;
    buf.reserve(HEADER_SIZE_BYTES + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, index, payload).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// Decodes one complete frame occupying exactly all of `frame`.
pub fn decode(frame: &[u8]) -> Result<(u64, &[u8]), FrameError> {
    let header = Header::parse(frame).ok_or(FrameError::Truncated)?;
    if header.payload_len_bytes as usize > MAX_PAYLOAD_SIZE_BYTES {
        return Err(FrameError::TooLong);
    }
    let payload = frame
        .get(HEADER_SIZE_BYTES..)
        .ok_or(FrameError::Truncated)?;
    header.check(payload)?;
    Ok((header.index, payload))
}

/// CRC32C over the length field, the index and the payload, in on-disk order.
fn checksum(payload_len_bytes: u32, index: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&payload_len_bytes.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &index.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(index: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, index, payload).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        for (index, payload) in [(0u64, &b""[..]), (1, b"x"), (u64::MAX, b"hello world")] {
            let bytes = frame(index, payload);
            assert_eq!(bytes.len() as u64, frame_size_bytes(payload.len()));
            assert_eq!(decode(&bytes), Ok((index, payload)));
        }
    }

    #[test]
    fn layout_is_little_endian_len_crc_index_payload() {
        let bytes = frame(0x0102_0304_0506_0708, b"abc");
        assert_eq!(&bytes[0..4], &3u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&bytes[16..], b"abc");
        let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        let mut covered = bytes[0..4].to_vec();
        covered.extend_from_slice(&bytes[8..]);
        assert_eq!(crc, crc32c::crc32c(&covered));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let good = frame(42, b"some payload bytes");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn truncated_frames_are_rejected() {
        let good = frame(7, b"payload");
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_length_field_is_rejected() {
        let mut bad = frame(1, b"x");
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::TooLong));
    }

    #[test]
    fn oversized_payload_is_invalid_argument() {
        let big = vec![0u8; MAX_PAYLOAD_SIZE_BYTES + 1];
        let mut buf = Vec::new();
        assert!(matches!(
            encode(&mut buf, 1, &big),
            Err(Error::InvalidArgument(_))
        ));
        assert!(buf.is_empty());
    }
}
