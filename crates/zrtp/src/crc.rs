//! The ZRTP packet trailer: CRC-32C (Castagnoli, RFC 3309 Appendix; RFC 6189 §5).
//!
//! The checksum is the reflected CRC-32C with initial value and final XOR `0xFFFFFFFF`, as SCTP
//! and iSCSI use it. On the wire it sits in the last four octets in SCTP's order, which is the
//! little-endian order of the CRC value (what bzrtp writes after its byte swap).

/// The reflected Castagnoli polynomial 0x1EDC6F41.
const POLY: u32 = 0x82F6_3B78;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `data` (the value; see [`trailer`] for its wire form).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = (crc >> 8) ^ TABLE[((crc as u8) ^ b) as usize];
    }
    !crc
}

/// The four trailer octets for a packet whose header and message are `data`.
pub fn trailer(data: &[u8]) -> [u8; 4] {
    crc32c(data).to_le_bytes()
}

#[cfg(test)]
mod rfc3720 {
    use super::*;

    #[test]
    fn check_value_of_the_catalogue() {
        // The standard check value of CRC-32C ("123456789").
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn iscsi_vectors_in_wire_order() {
        // RFC 3720 Appendix B.4: 32 octets of zeros, of ones, incrementing; CRC octets as sent.
        assert_eq!(trailer(&[0u8; 32]), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(trailer(&[0xffu8; 32]), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(trailer(&inc), [0x4e, 0x79, 0xdd, 0x46]);
    }
}
