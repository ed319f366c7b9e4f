//! Compact storage for Clerk ids: `sess_`, `user_` or `client_` plus 27 base62 characters
//! pack into 22 bytes with no heap allocation; any other id is kept as boxed text.
//!
//! The packing maps `0-9A-Za-z` to 0..61 in ASCII order, six bits a character, so packed ids
//! of the same prefix compare like their text; ordering across forms goes through text.

use std::cmp::Ordering;
use std::hash::Hasher;

/// Prefixes that pack; the index is stored in the packed form.
const PREFIXES: [&str; 3] = ["sess_", "user_", "client_"];
/// Characters after the prefix of a Clerk id.
const BODY_CHARS: usize = 27;
/// 27 characters × 6 bits = 162 bits, in 21 bytes.
const PACKED_BYTES: usize = 21;
/// Longest text a packed id decodes to (`client_` + 27).
pub const MAX_PACKED_LEN: usize = 7 + BODY_CHARS;

/// An id as the state store keeps it (24 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactId {
    Absent,
    Packed {
        prefix: u8,
        body: [u8; PACKED_BYTES],
    },
    Text(Box<str>),
}

/// Scratch space to decode a packed id into, on the stack.
pub type IdBuf = [u8; MAX_PACKED_LEN];

/// Base62 digit of each byte, or `INVALID`.
const INVALID: u8 = 0xff;
const DIGITS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            b'0'..=b'9' => c as u8 - b'0',
            b'A'..=b'Z' => c as u8 - b'A' + 10,
            b'a'..=b'z' => c as u8 - b'a' + 36,
            _ => INVALID,
        };
        c += 1;
    }
    table
};

/// The base62 alphabet in ASCII order.
const BASE62: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz??";

// `CompactId::as_str` relies on this: what it decodes is ASCII, so UTF-8.
const _: () = assert!(
    BASE62.is_ascii() && PREFIXES[0].is_ascii() && PREFIXES[1].is_ascii() && PREFIXES[2].is_ascii()
);

/// The hash of an id as the store computes it from its stored form (see
/// [`CompactId::hash_stored`]), given the text and its packing.
#[inline]
pub fn hash_lookup(text: &str, packed: Option<&(u8, [u8; PACKED_BYTES])>, state: &mut impl Hasher) {
    match packed {
        Some((prefix, body)) => {
            state.write_u8(*prefix);
            state.write(body);
        }
        None => state.write(text.as_bytes()),
    }
}

/// Packs a Clerk-form id, or returns `None` for any other form.
#[inline]
pub fn pack(id: &str) -> Option<(u8, [u8; PACKED_BYTES])> {
    let bytes = id.as_bytes();
    // The length tells which prefix it can be: one comparison, not a search of the three.
    let prefix_len = bytes.len().checked_sub(BODY_CHARS)?;
    let prefix = PREFIXES
        .iter()
        .position(|p| p.len() == prefix_len && bytes.starts_with(p.as_bytes()))?;
    let rest: &[u8; BODY_CHARS] = bytes[prefix_len..].try_into().ok()?;
    pack_body(rest).map(|body| (prefix as u8, body))
}

/// The packed body of 27 characters, or `None` if one is not base62: with SSSE3 where the
/// CPU has it.
#[inline]
fn pack_body(rest: &[u8; BODY_CHARS]) -> Option<[u8; PACKED_BYTES]> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3, checked just above.
        return unsafe { pack_body_ssse3(rest) };
    }
    pack_body_scalar(rest)
}

/// [`pack_body`] a character at a time, through a table.
fn pack_body_scalar(rest: &[u8; BODY_CHARS]) -> Option<[u8; PACKED_BYTES]> {
    // Four characters (24 bits) make three bytes; the last three characters (18 bits) are
    // left-aligned in the last three bytes.
    let mut body = [0u8; PACKED_BYTES];
    let mut invalid = 0u8;
    let mut group = |chars: &[u8]| {
        let mut acc = 0u32;
        for &c in chars {
            let d = DIGITS[c as usize];
            invalid |= d & 0x40;
            acc = (acc << 6) | u32::from(d & 0x3f);
        }
        acc << (6 * (4 - chars.len()))
    };
    for (i, chunk) in rest.chunks(4).enumerate() {
        let acc = group(chunk);
        body[3 * i] = (acc >> 16) as u8;
        body[3 * i + 1] = (acc >> 8) as u8;
        body[3 * i + 2] = acc as u8;
    }
    // Valid digits are below 64, so bit 6 is set only by INVALID.
    (invalid == 0).then_some(body)
}

/// [`pack_body_scalar`] sixteen characters at a time (base64 decoding's method, with base62's
/// ranges): three ids are packed per observation, and the table walk of 27 characters was
/// ~4% of the live loop. The body is padded with '0' (digit 0) to 32 characters: the 28th
/// is the zero the last group of three is shifted by, and groups past the seventh are
/// dropped.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn pack_body_ssse3(rest: &[u8; BODY_CHARS]) -> Option<[u8; PACKED_BYTES]> {
    use std::arch::x86_64::*;
    // Each byte's digit, and whether it was one: '0'-'9' are 48-57, 'A'-'Z' 65-90, 'a'-'z'
    // 97-122. Compared as signed bytes, so that bytes of 128 and up fall in no range.
    let digits = |v: __m128i| {
        let between = |low: i8, high: i8| {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8(low - 1)),
                _mm_cmpgt_epi8(_mm_set1_epi8(high + 1), v),
            )
        };
        let (digit, upper, lower) = (between(48, 57), between(65, 90), between(97, 122));
        let offset = _mm_or_si128(
            _mm_or_si128(
                _mm_and_si128(digit, _mm_set1_epi8(-48)),
                _mm_and_si128(upper, _mm_set1_epi8(-55)),
            ),
            _mm_and_si128(lower, _mm_set1_epi8(-61)),
        );
        let valid = _mm_or_si128(_mm_or_si128(digit, upper), lower);
        (_mm_add_epi8(v, offset), _mm_movemask_epi8(valid) == 0xFFFF)
    };
    // Four 6-bit digits (first character highest) to 24 bits per 32-bit lane, then each
    // lane's three bytes high to low, twelve bytes in all.
    let pack = |d: __m128i| {
        let pairs = _mm_maddubs_epi16(d, _mm_set1_epi32(0x0140_0140));
        let quads = _mm_madd_epi16(pairs, _mm_set1_epi32(0x0001_1000));
        _mm_shuffle_epi8(
            quads,
            _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1),
        )
    };
    // SAFETY: loads of 16 bytes at 0 and 11 of the 27. The second, shifted down by five,
    // is characters 16 to 26 and the padding.
    let (first, last) = unsafe {
        (
            _mm_loadu_si128(rest.as_ptr().cast()),
            _mm_loadu_si128(rest.as_ptr().add(BODY_CHARS - 16).cast()),
        )
    };
    let padding = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 48, 48, 48, 48, 48);
    let (low, low_valid) = digits(first);
    let (high, high_valid) = digits(_mm_or_si128(_mm_srli_si128(last, 5), padding));
    if !(low_valid && high_valid) {
        return None;
    }
    let mut out = [0u8; 32];
    // SAFETY: stores of 16 bytes at 0 and 12 into 32. The second overwrites the first's four
    // unused bytes; its last seven are past the 21 kept.
    unsafe {
        _mm_storeu_si128(out.as_mut_ptr().cast(), pack(low));
        _mm_storeu_si128(out.as_mut_ptr().add(12).cast(), pack(high));
    }
    out[..PACKED_BYTES].try_into().ok()
}

/// The 27 characters of a packed body: with SSSE3 where the CPU has it.
#[inline]
fn unpack_body(body: &[u8; PACKED_BYTES], chars: &mut [u8; BODY_CHARS]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3, checked just above.
        return unsafe { unpack_body_ssse3(body, chars) };
    }
    unpack_body_scalar(body, chars)
}

/// [`unpack_body`] a group of three bytes at a time, through a table.
fn unpack_body_scalar(body: &[u8; PACKED_BYTES], chars: &mut [u8; BODY_CHARS]) {
    // Three bytes hold four characters; the last group holds three.
    for (group, bytes) in chars.chunks_mut(4).zip(body.chunks(3)) {
        let acc = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for (i, c) in group.iter_mut().enumerate() {
            *c = BASE62[((acc >> (18 - 6 * i)) & 0x3f) as usize];
        }
    }
}

/// [`unpack_body_scalar`] twelve bytes at a time (base64 encoding's method, with base62's
/// ranges): every terminal session's id is decoded again for its changelog tombstone, and
/// the scalar walk was ~3% of the batch step. Writes ASCII only: a 6-bit value maps to at
/// most 63 + 61 = 124, though packed ids hold values below 62.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn unpack_body_ssse3(body: &[u8; PACKED_BYTES], chars: &mut [u8; BODY_CHARS]) {
    use std::arch::x86_64::*;
    // Twelve bytes of `v` (picked in groups of three by `order`) to sixteen 6-bit values,
    // one a byte, first character first.
    let unpack = |v: __m128i, order: __m128i| {
        let v = _mm_shuffle_epi8(v, order);
        let high = _mm_mulhi_epu16(
            _mm_and_si128(v, _mm_set1_epi32(0x0FC0_FC00)),
            _mm_set1_epi32(0x0400_0040),
        );
        let low = _mm_mullo_epi16(
            _mm_and_si128(v, _mm_set1_epi32(0x003F_03F0)),
            _mm_set1_epi32(0x0100_0010),
        );
        let values = _mm_or_si128(high, low);
        // '0' + value; 7 more past '9' (to 'A'); 6 more past 'Z' (to 'a').
        let past_nine = _mm_and_si128(_mm_cmpgt_epi8(values, _mm_set1_epi8(9)), _mm_set1_epi8(7));
        let past_z = _mm_and_si128(_mm_cmpgt_epi8(values, _mm_set1_epi8(35)), _mm_set1_epi8(6));
        _mm_add_epi8(
            _mm_add_epi8(values, _mm_set1_epi8(b'0' as i8)),
            _mm_add_epi8(past_nine, past_z),
        )
    };
    // SAFETY: loads of 16 bytes at 0 and 5 of the 21; stores of 16 at 0 and 11 of the 27.
    unsafe {
        let first = unpack(
            _mm_loadu_si128(body.as_ptr().cast()),
            _mm_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10),
        );
        // Bytes 12 to 20 are at 7 to 15 of the second load; the eighth group (past the
        // body) is zeros, dropped.
        let second = unpack(
            _mm_loadu_si128(body.as_ptr().add(PACKED_BYTES - 16).cast()),
            _mm_setr_epi8(8, 7, 9, 8, 11, 10, 12, 11, 14, 13, 15, 14, -1, -1, -1, -1),
        );
        _mm_storeu_si128(chars.as_mut_ptr().cast(), first);
        // Characters 11 to 26: the first's last five, the second's first eleven.
        _mm_storeu_si128(
            chars.as_mut_ptr().add(BODY_CHARS - 16).cast(),
            _mm_alignr_epi8(second, first, 11),
        );
    }
}

impl CompactId {
    /// Stores `id`, packed when it has the Clerk form.
    pub fn new(id: &str) -> CompactId {
        match pack(id) {
            Some((prefix, body)) => CompactId::Packed { prefix, body },
            None => CompactId::Text(id.into()),
        }
    }

    /// `Absent` for `None`.
    pub fn optional(id: Option<&str>) -> CompactId {
        id.map_or(CompactId::Absent, CompactId::new)
    }

    /// Whether this is the id `text` (packed once by the caller as `packed`).
    #[inline]
    pub fn matches(&self, text: &str, packed: Option<&(u8, [u8; PACKED_BYTES])>) -> bool {
        match (self, packed) {
            (CompactId::Packed { prefix, body }, Some((p, b))) => prefix == p && body == b,
            (CompactId::Text(t), None) => &**t == text,
            _ => false,
        }
    }

    /// The id as text, decoding into `buf` when packed.
    #[inline]
    pub fn as_str<'a>(&'a self, buf: &'a mut IdBuf) -> Option<&'a str> {
        match self {
            CompactId::Absent => None,
            CompactId::Text(t) => Some(t),
            CompactId::Packed { prefix, body } => {
                let prefix = PREFIXES[*prefix as usize].as_bytes();
                buf[..prefix.len()].copy_from_slice(prefix);
                let chars: &mut [u8; BODY_CHARS] = (&mut buf
                    [prefix.len()..prefix.len() + BODY_CHARS])
                    .try_into()
                    .expect("IdBuf holds the longest prefix and a body");
                unpack_body(body, chars);
                let len = prefix.len() + BODY_CHARS;
                // SAFETY: every byte of `buf[..len]` was just written from `PREFIXES` and by
                // the unpacking, which writes ASCII only, so it is UTF-8. (The check this
                // skips was ~2% of the live loop: three ids are decoded for every state
                // change.)
                Some(unsafe { std::str::from_utf8_unchecked(&buf[..len]) })
            }
        }
    }

    /// Feeds the stored form to `state`: packed bytes for packed ids, text otherwise.
    /// [`hash_lookup`] gives the same for the id's text, so the store hashes without
    /// decoding.
    #[inline]
    pub fn hash_stored(&self, state: &mut impl Hasher) {
        match self {
            CompactId::Absent => state.write_u8(0),
            CompactId::Packed { prefix, body } => {
                state.write_u8(*prefix);
                state.write(body);
            }
            CompactId::Text(t) => state.write(t.as_bytes()),
        }
    }

    /// Text order, as the timer tie-break of SPEC section 3 requires.
    pub fn cmp_text(&self, other: &CompactId) -> Ordering {
        let (mut a, mut b) = ([0u8; MAX_PACKED_LEN], [0u8; MAX_PACKED_LEN]);
        self.as_str(&mut a).cmp(&other.as_str(&mut b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random ids compared between the SSSE3 and the scalar code: fewer under Miri (`cargo
    /// miri test`), which checks every access of the unsafe code but runs it about a
    /// thousand times slower.
    const RANDOM_ROUNDS: usize = if cfg!(miri) { 400 } else { 200_000 };

    #[test]
    fn clerk_ids_pack_into_24_bytes_and_round_trip() {
        assert_eq!(std::mem::size_of::<CompactId>(), 24);
        for id in [
            "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
            "user_000000000000000000000000000",
            "client_zzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            let stored = CompactId::new(id);
            assert!(matches!(stored, CompactId::Packed { .. }), "{id}");
            let mut buf = [0; MAX_PACKED_LEN];
            assert_eq!(stored.as_str(&mut buf), Some(id));
            assert!(stored.matches(id, pack(id).as_ref()));
        }
    }

    /// Every character of the alphabet, at every position of the body, decodes to itself.
    #[test]
    fn every_base62_character_round_trips_at_every_position() {
        let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut buf = [0; MAX_PACKED_LEN];
        for (n, c) in alphabet.chars().enumerate() {
            for at in 0..BODY_CHARS {
                // A neighbour that differs, so that a character bleeding into the next shows.
                let other = alphabet.chars().nth((n * 7 + at + 1) % 62).unwrap();
                let body: String = (0..BODY_CHARS)
                    .map(|i| if i == at { c } else { other })
                    .collect();
                for prefix in PREFIXES {
                    let id = format!("{prefix}{body}");
                    let stored = CompactId::new(&id);
                    assert!(matches!(stored, CompactId::Packed { .. }), "{id}");
                    assert_eq!(stored.as_str(&mut buf), Some(id.as_str()));
                }
            }
        }
    }

    /// The SSSE3 packing gives what the scalar one gives, for any 27 bytes: base62
    /// characters at every place, and bytes that are not (each range's neighbours, bytes
    /// of 128 and up).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn ssse3_packing_matches_the_table_walk() {
        if !std::arch::is_x86_feature_detected!("ssse3") {
            return;
        }
        let mut rng = fastrand::Rng::with_seed(62);
        let edges = b"/09:@AZ[`az{\x00\x7f\x80\xff";
        let mut checked_invalid = 0;
        for round in 0..RANDOM_ROUNDS {
            let mut rest = [0u8; BODY_CHARS];
            for c in &mut rest {
                *c = BASE62[rng.usize(..62)];
            }
            if round % 2 == 1 {
                let at = rng.usize(..BODY_CHARS);
                rest[at] = if round % 4 == 1 {
                    edges[rng.usize(..edges.len())]
                } else {
                    rng.u8(..)
                };
            }
            // SAFETY: the CPU has SSSE3, checked above.
            let simd = unsafe { pack_body_ssse3(&rest) };
            assert_eq!(simd, pack_body_scalar(&rest), "{rest:?}");
            checked_invalid += usize::from(simd.is_none());
        }
        assert!(checked_invalid > RANDOM_ROUNDS / 4, "{checked_invalid}");
    }

    /// The SSSE3 unpacking gives what the scalar one gives, for any body bytes (packed
    /// ids hold 6-bit values below 62 only; all 64 are compared here).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn ssse3_unpacking_matches_the_table_walk() {
        if !std::arch::is_x86_feature_detected!("ssse3") {
            return;
        }
        let mut rng = fastrand::Rng::with_seed(26);
        for _ in 0..RANDOM_ROUNDS {
            let mut body = [0u8; PACKED_BYTES];
            rng.fill(&mut body);
            let (mut simd, mut scalar) = ([0u8; BODY_CHARS], [0u8; BODY_CHARS]);
            // SAFETY: the CPU has SSSE3, checked above.
            unsafe { unpack_body_ssse3(&body, &mut simd) };
            unpack_body_scalar(&body, &mut scalar);
            let scalar_ascii = scalar.map(|c| if c == b'?' { 0 } else { c });
            let simd_below_62 = simd.map(|c| if c > b'z' { 0 } else { c });
            assert_eq!(simd_below_62, scalar_ascii, "{body:?}");
            assert!(simd.is_ascii());
        }
    }

    #[test]
    fn other_ids_fall_back_to_text() {
        for id in [
            "sess_a",
            "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0!",
            "org_1",
            "",
            "séss",
        ] {
            let stored = CompactId::new(id);
            assert!(matches!(stored, CompactId::Text(_)), "{id}");
            let mut buf = [0; MAX_PACKED_LEN];
            assert_eq!(stored.as_str(&mut buf), Some(id));
            assert!(stored.matches(id, None));
        }
    }

    #[test]
    fn packed_order_is_text_order() {
        let ids = [
            "sess_0000000000000000000000000Z",
            "sess_00000000000000000000000000a",
            "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
            "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0T",
            "sess_Zg7np7Hrk0SN6kj5EDMLDaKNL0S",
            "sess_a",
            "sess_zz",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(
                    CompactId::new(a).cmp_text(&CompactId::new(b)),
                    a.cmp(b),
                    "{a} vs {b}"
                );
            }
        }
    }
}
