//! HPACK's Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: ordered by length, then by symbol, each code is the previous one plus
//! one (shifted left when the length grows). So the 257 code lengths below determine every code,
//! and decoding needs, per length, the first code and where its symbols start in the sorted list.

use crate::wire::{Sure, Unsure};

/// Code length in bits of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7,
    8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7,
    15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24,
    23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23,
    23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26,
    26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20,
    21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27,
    27, 27, 26, 30,
];

const EOS: u16 = 256;
const LONGEST: usize = 30;

/// The decoding tables, computed at compile time from [`LENGTHS`].
struct Canonical {
    /// Symbols ordered by (length, symbol).
    sorted: [u16; 257],
    /// Per length: how many codes have it.
    count: [u32; LONGEST + 1],
    /// Per length: the first (smallest) code of that length.
    first_code: [u32; LONGEST + 1],
    /// Per length: index into `sorted` of its first symbol.
    first_index: [u32; LONGEST + 1],
}

const fn canonical() -> Canonical {
    let mut count = [0u32; LONGEST + 1];
    let mut symbol = 0;
    while symbol < 257 {
        count[LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut first_code = [0u32; LONGEST + 1];
    let mut first_index = [0u32; LONGEST + 1];
    let mut code = 0u32;
    let mut index = 0u32;
    let mut len = 1;
    while len <= LONGEST {
        code = (code + count[len - 1]) << 1;
        first_code[len] = code;
        first_index[len] = index;
        index += count[len];
        len += 1;
    }
    let mut sorted = [0u16; 257];
    let mut next = first_index;
    let mut symbol = 0;
    while symbol < 257 {
        let len = LENGTHS[symbol] as usize;
        sorted[next[len] as usize] = symbol as u16;
        next[len] += 1;
        symbol += 1;
    }
    Canonical {
        sorted,
        count,
        first_code,
        first_index,
    }
}

const TABLE: Canonical = canonical();

/// Decodes `input` into the front of `out`; returns the decoded bytes. Refuses EOS inside the
/// string, padding longer than 7 bits, padding that is not all ones, and a full `out`.
pub fn decode<'a>(input: &[u8], out: &'a mut [u8]) -> Sure<&'a [u8]> {
    let mut written = 0;
    let mut code = 0u32;
    let mut len = 0usize;
    for byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len > LONGEST {
                return Err(Unsure);
            }
            let offset = code.wrapping_sub(TABLE.first_code[len]);
            if code >= TABLE.first_code[len] && offset < TABLE.count[len] {
                let symbol = TABLE.sorted[(TABLE.first_index[len] + offset) as usize];
                if symbol == EOS {
                    return Err(Unsure);
                }
                *out.get_mut(written).ok_or(Unsure)? = symbol as u8;
                written += 1;
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    if len > 7 || code != (1 << len) - 1 {
        return Err(Unsure);
    }
    Ok(&out[..written])
}
