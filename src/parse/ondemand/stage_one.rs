//! Stage one of the on-demand scan: one SIMD pass over a record that marks every quote
//! in a bitmap, refuses what makes strings hard (a backslash or a control character inside a
//! string, an unterminated string) and says whether every byte is ASCII. Of its four kernels
//! the widest the CPU runs at full speed is chosen at run time; the byte-by-byte one is the
//! reference.

/// Which stage-one kernel marks quotes, backslashes and control characters: the widest the
/// CPU runs at full speed, found at run time (the binary targets any x86-64), or one forced
/// by tests so that each path runs under the property tests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StageOne {
    /// Byte by byte: any CPU.
    Portable,
    /// Four 16-byte compares per block: every x86-64.
    Sse2,
    /// Two 32-byte compares per block.
    Avx2,
    /// One 64-byte compare per block, straight into bitmaps (AVX-512BW).
    Avx512,
}

impl StageOne {
    /// The widest kernel this CPU runs at full speed: AVX-512 only where the CPU also has
    /// AVX-512 VBMI2 (Ice Lake and later, Zen 4 and later; simdjson draws its AVX-512 line
    /// there too), AVX2 on the first AVX-512 generation (Skylake-SP, Cascade Lake Xeons).
    /// There, 512-bit instructions lower the core's clock for a while, and the thread
    /// parsing also runs the engine and feeds librdkafka, whereas the AVX2 kernel parses
    /// within 1-3% of the AVX-512 one (docs/benchmarks.md). The kernel itself uses no VBMI2
    /// instruction: the flag only tells the generation.
    pub fn detect() -> StageOne {
        Self::available()
            .into_iter()
            .rev()
            .find(|&kernel| kernel != StageOne::Avx512 || Self::avx512_at_full_clock())
            .unwrap_or(StageOne::Portable)
    }

    /// Whether this CPU's AVX-512 is of a generation that keeps its clock (see `detect`).
    fn avx512_at_full_clock() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512vbmi2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every kernel this CPU runs, narrowest first. The AVX kernels also find the inside of
    /// strings with a carry-less multiply (PCLMULQDQ, which every AVX2 CPU has).
    pub fn available() -> Vec<StageOne> {
        let mut kernels = vec![StageOne::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            kernels.push(StageOne::Sse2);
            let clmul = std::arch::is_x86_feature_detected!("pclmulqdq");
            if clmul && std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(StageOne::Avx2);
            }
            if clmul && std::arch::is_x86_feature_detected!("avx512bw") {
                kernels.push(StageOne::Avx512);
            }
        }
        kernels
    }

    /// The bitmaps of one 64-byte block (what the tests compare between kernels).
    #[cfg(test)]
    fn block_masks(self, block: &[u8; 64]) -> BlockMasks {
        match self {
            #[cfg(target_arch = "x86_64")]
            StageOne::Sse2 => block_masks_sse2(block),
            // SAFETY: `available()` lists these kernels only when the CPU has the feature,
            // and a parser only ever holds a kernel from that list.
            #[cfg(target_arch = "x86_64")]
            StageOne::Avx2 => unsafe { block_masks_avx2(block) },
            #[cfg(target_arch = "x86_64")]
            StageOne::Avx512 => unsafe { block_masks_avx512(block) },
            _ => block_masks_portable(block),
        }
    }
}

/// Stage one's bitmaps of one 64-byte block: bit `i` is set when byte `i` is what the
/// field names.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
struct BlockMasks {
    quotes: u64,
    /// Backslashes and bytes below 0x20. Inside a string either one hands the record to
    /// the tape (an escape, or a control character JSON forbids there); outside strings a
    /// backslash is a syntax error the grammar walk finds, and the rest is whitespace.
    escapes_or_controls: u64,
    /// Whether any byte is 0x80 or above: part of a multi-byte UTF-8 sequence (or invalid).
    non_ascii: bool,
}

/// The SSE2 kernel. Most blocks of a record hold no backslash, control character or
/// non-ASCII byte, so it first finds the quotes and asks one question of the whole block:
/// a signed compare below the space flags both control characters and bytes of 0x80 or
/// above (negative as `i8`), and with the backslashes that is one mask. Only a block where
/// that mask is not empty is looked at again for the exact bitmaps.
#[cfg(target_arch = "x86_64")]
#[inline]
fn block_masks_sse2(block: &[u8; 64]) -> BlockMasks {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let (sixteens, _) = block.as_chunks::<16>();
    let chunks: [safe_arch::m128i; 4] = std::array::from_fn(|i| load_unaligned_m128i(&sixteens[i]));
    let quote = set_splat_i8_m128i(b'"' as i8);
    let backslash = set_splat_i8_m128i(b'\\' as i8);
    let space = set_splat_i8_m128i(b' ' as i8);
    let quotes = bitmap_sse2(chunks.map(|v| cmp_eq_mask_i8_m128i(v, quote)));
    let rare = chunks.map(|v| {
        bitor_m128i(
            cmp_eq_mask_i8_m128i(v, backslash),
            cmp_lt_mask_i8_m128i(v, space),
        )
    });
    let rare = bitor_m128i(bitor_m128i(rare[0], rare[1]), bitor_m128i(rare[2], rare[3]));
    if move_mask_i8_m128i(rare) == 0 {
        return BlockMasks {
            quotes,
            escapes_or_controls: 0,
            non_ascii: false,
        };
    }
    block_masks_sse2_exact(block, quotes)
}

/// The SSE2 kernel's exact bitmaps of `block`, whose quotes are `quotes`, for a block that
/// holds a backslash, a control character or a non-ASCII byte. (It loads the block again:
/// handing it the four loaded registers cost the common path about six more instructions a
/// block, counted with cachegrind.)
#[cfg(target_arch = "x86_64")]
#[cold]
fn block_masks_sse2_exact(block: &[u8; 64], quotes: u64) -> BlockMasks {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let (sixteens, _) = block.as_chunks::<16>();
    let chunks: [safe_arch::m128i; 4] = std::array::from_fn(|i| load_unaligned_m128i(&sixteens[i]));
    let backslash = set_splat_i8_m128i(b'\\' as i8);
    let below_space = set_splat_i8_m128i(0x1f);
    // min(b, 0x1f) == b exactly when b <= 0x1f (unsigned).
    let escapes_or_controls = chunks.map(|v| {
        bitor_m128i(
            cmp_eq_mask_i8_m128i(v, backslash),
            cmp_eq_mask_i8_m128i(min_u8_m128i(v, below_space), v),
        )
    });
    let high_bytes = bitor_m128i(
        bitor_m128i(chunks[0], chunks[1]),
        bitor_m128i(chunks[2], chunks[3]),
    );
    BlockMasks {
        quotes,
        escapes_or_controls: bitmap_sse2(escapes_or_controls),
        non_ascii: move_mask_i8_m128i(high_bytes) != 0,
    }
}

/// The 64-bit bitmap of four 16-byte compare results, the first chunk's in the low bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bitmap_sse2(masks: [safe_arch::m128i; 4]) -> u64 {
    masks.iter().enumerate().fold(0, |bits, (i, &m)| {
        bits | u64::from(safe_arch::move_mask_i8_m128i(m) as u16) << (16 * i)
    })
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_masks_avx2(block: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    // SAFETY: two unaligned 32-byte loads inside the 64-byte array.
    let (low, high) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let quotes = u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(low, quote)) as u32)
        | (u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(high, quote)) as u32) << 32);
    // As in the SSE2 kernel: one mask of backslashes and bytes below the space as `i8`
    // (control characters and everything of 0x80 or above), the exact bitmaps only when
    // it is not empty.
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let space = _mm256_set1_epi8(b' ' as i8);
    let rare = |v| _mm256_or_si256(_mm256_cmpeq_epi8(v, backslash), _mm256_cmpgt_epi8(space, v));
    if _mm256_movemask_epi8(_mm256_or_si256(rare(low), rare(high))) == 0 {
        return BlockMasks {
            quotes,
            escapes_or_controls: 0,
            non_ascii: false,
        };
    }
    // SAFETY: this function runs only where the CPU has AVX2.
    unsafe { block_masks_avx2_exact(block, quotes) }
}

/// The AVX2 kernel's exact bitmaps of `block`, whose quotes are `quotes`, for a block that
/// holds a backslash, a control character or a non-ASCII byte (loaded again, as in the SSE2
/// kernel).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[cold]
unsafe fn block_masks_avx2_exact(block: &[u8; 64], quotes: u64) -> BlockMasks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    // SAFETY: two unaligned 32-byte loads inside the 64-byte array.
    let (low, high) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let bits = |low_mask: __m256i, high_mask: __m256i| {
        u64::from(_mm256_movemask_epi8(low_mask) as u32)
            | (u64::from(_mm256_movemask_epi8(high_mask) as u32) << 32)
    };
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let below_space = _mm256_set1_epi8(0x1f);
    // min(b, 0x1f) == b exactly when b <= 0x1f (unsigned).
    let escape_or_control = |v| {
        _mm256_or_si256(
            _mm256_cmpeq_epi8(v, backslash),
            _mm256_cmpeq_epi8(_mm256_min_epu8(v, below_space), v),
        )
    };
    BlockMasks {
        quotes,
        escapes_or_controls: bits(escape_or_control(low), escape_or_control(high)),
        non_ascii: _mm256_movemask_epi8(_mm256_or_si256(low, high)) != 0,
    }
}

/// # Safety
/// The CPU must have AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
unsafe fn block_masks_avx512(block: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::{
        __m512i, _mm512_cmpeq_epi8_mask, _mm512_cmple_epu8_mask, _mm512_loadu_si512,
        _mm512_movepi8_mask, _mm512_set1_epi8,
    };
    // SAFETY: one unaligned 64-byte load of the 64-byte array.
    let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast::<__m512i>()) };
    BlockMasks {
        quotes: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'"' as i8)),
        escapes_or_controls: _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'\\' as i8))
            | _mm512_cmple_epu8_mask(v, _mm512_set1_epi8(0x1f)),
        non_ascii: _mm512_movepi8_mask(v) != 0,
    }
}

/// The byte-by-byte kernel: the reference the others are tested against.
#[inline]
fn block_masks_portable(block: &[u8; 64]) -> BlockMasks {
    let mut masks = BlockMasks::default();
    for (i, &b) in block.iter().enumerate() {
        masks.quotes |= u64::from(b == b'"') << i;
        masks.escapes_or_controls |= u64::from(b == b'\\' || b < 0x20) << i;
        masks.non_ascii |= b >= 0x80;
    }
    masks
}

/// Bit `i` of the result is the parity of bits `0..=i` of `x`: with quotes as `x`, the
/// bytes inside a string (its opening quote included).
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// [`prefix_xor`] in one instruction: the carry-less product of `x` and all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
fn prefix_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8, _mm_set_epi64x,
    };
    let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
    _mm_cvtsi128_si64(product) as u64
}

/// What stage one learnt of a record it did not refuse.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Every byte is below 0x80: valid UTF-8 without a further check.
    Ascii,
    /// Some bytes are not ASCII: the record's UTF-8 must be validated.
    Other,
}

/// Stage one: the quote bitmap of `raw` into `quotes`, and whether the record is all ASCII;
/// `None` when the record has a backslash or a control character inside a string, or an
/// unterminated string (a backslash outside strings is left to the grammar walk, which
/// refuses it).
pub(super) fn index_quotes(
    raw: &[u8],
    quotes: &mut Vec<u64>,
    kernel: StageOne,
) -> Option<Encoding> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        StageOne::Sse2 => index_blocks(raw, quotes, block_masks_sse2, prefix_xor),
        // SAFETY: `available()` lists these kernels only when the CPU has their features,
        // and a parser only ever holds a kernel from that list.
        #[cfg(target_arch = "x86_64")]
        StageOne::Avx2 => unsafe { index_quotes_avx2(raw, quotes) },
        #[cfg(target_arch = "x86_64")]
        StageOne::Avx512 => unsafe { index_quotes_avx512(raw, quotes) },
        _ => index_blocks(raw, quotes, block_masks_portable, prefix_xor),
    }
}

/// # Safety
/// The CPU must have AVX2 and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
unsafe fn index_quotes_avx2(raw: &[u8], quotes: &mut Vec<u64>) -> Option<Encoding> {
    // Compiled with the features, so the kernel and the multiply inline into the loop.
    index_blocks(
        raw,
        quotes,
        // SAFETY: this function runs only where the CPU has AVX2.
        |block| unsafe { block_masks_avx2(block) },
        |quotes| prefix_xor_clmul(quotes),
    )
}

/// # Safety
/// The CPU must have AVX-512BW and PCLMULQDQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw,pclmulqdq")]
unsafe fn index_quotes_avx512(raw: &[u8], quotes: &mut Vec<u64>) -> Option<Encoding> {
    index_blocks(
        raw,
        quotes,
        // SAFETY: this function runs only where the CPU has AVX-512BW.
        |block| unsafe { block_masks_avx512(block) },
        |quotes| prefix_xor_clmul(quotes),
    )
}

/// Stage one over whole blocks, with the kernel's bitmaps and a prefix-XOR.
#[inline(always)]
fn index_blocks(
    raw: &[u8],
    quotes: &mut Vec<u64>,
    block_masks: impl Fn(&[u8; 64]) -> BlockMasks,
    prefix_xor: impl Fn(u64) -> u64,
) -> Option<Encoding> {
    quotes.clear();
    quotes.reserve(raw.len().div_ceil(64));
    // All ones while a string runs on from the previous block.
    let mut carry = 0u64;
    let mut non_ascii = false;
    let mut index = |block: &[u8; 64]| {
        let masks = block_masks(block);
        let inside = prefix_xor(masks.quotes) ^ carry;
        carry = ((inside as i64) >> 63) as u64;
        non_ascii |= masks.non_ascii;
        quotes.push(masks.quotes);
        masks.escapes_or_controls & inside == 0
    };
    let mut blocks = raw.chunks_exact(64);
    for block in blocks.by_ref() {
        if !index(block.try_into().ok()?) {
            return None;
        }
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut padded = [b' '; 64];
        padded[..rest.len()].copy_from_slice(rest);
        if !index(&padded) {
            return None;
        }
    }
    (carry == 0).then_some(if !non_ascii {
        Encoding::Ascii
    } else {
        Encoding::Other
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_carry_less_prefix_xor_is_the_shifting_one() {
        if !std::arch::is_x86_feature_detected!("pclmulqdq") {
            return;
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for x in [0, 1, 1 << 63, u64::MAX, 0b1_0010]
            .into_iter()
            .chain(std::iter::repeat_with(|| rng.u64(..)).take(10_000))
        {
            // SAFETY: the CPU has PCLMULQDQ (checked above).
            assert_eq!(unsafe { prefix_xor_clmul(x) }, prefix_xor(x), "{x:#x}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn detect_takes_avx512_only_where_the_clock_keeps_up() {
        let kernels = StageOne::available();
        let chosen = StageOne::detect();
        let vbmi2 = std::arch::is_x86_feature_detected!("avx512vbmi2");
        if kernels.contains(&StageOne::Avx512) && vbmi2 {
            assert_eq!(chosen, StageOne::Avx512);
        } else if kernels.contains(&StageOne::Avx2) {
            assert_eq!(
                chosen,
                StageOne::Avx2,
                "AVX-512 without VBMI2 parses with AVX2"
            );
        } else {
            assert_eq!(chosen, StageOne::Sse2);
        }
    }

    #[test]
    fn prefix_xor_marks_the_inside_of_strings() {
        // Quotes at bytes 1 and 4: bytes 1..=3 are inside (the closing quote is not).
        assert_eq!(prefix_xor(0b1_0010), 0b0_1110);
        assert_eq!(prefix_xor(0), 0);
        assert_eq!(prefix_xor(1 << 63), 1 << 63);
    }

    #[test]
    fn stage_one_rejects_what_makes_strings_hard() {
        for kernel in StageOne::available() {
            let mut quotes = Vec::new();
            let mut index = |raw: &[u8]| index_quotes(raw, &mut quotes, kernel);
            let ascii = Some(Encoding::Ascii);
            assert_eq!(index(br#"{"a":"b","c":1}"#), ascii, "{kernel:?}");
            assert_eq!(index(br#"{"a":"b\"c"}"#), None, "{kernel:?}");
            assert_eq!(index(b"{\"a\":\"b\tc\"}"), None, "{kernel:?}");
            assert_eq!(index(b"{\t\"a\":\n1}"), ascii, "{kernel:?}");
            assert_eq!(index(br#"{"a":"unterminated}"#), None, "{kernel:?}");
            // Any byte of 0x80 or above, in a full block or in the padded rest.
            let accented = format!("{{\"k\":\"{}é\"}}", "x".repeat(70));
            assert_eq!(
                index(accented.as_bytes()),
                Some(Encoding::Other),
                "{kernel:?}"
            );
            assert_eq!(
                index(&accented.as_bytes()[..60]),
                None,
                "unterminated, {kernel:?}"
            );
            assert_eq!(
                index("{\"é\":1}".as_bytes()),
                Some(Encoding::Other),
                "{kernel:?}"
            );
            // A string that runs across the 64-byte blocks.
            let long = format!("{{\"k\":\"{}\"}}", "x".repeat(150));
            assert_eq!(index(long.as_bytes()), ascii, "{kernel:?}");
            assert_eq!(
                quotes.iter().map(|q| q.count_ones()).sum::<u32>(),
                4,
                "{kernel:?}"
            );
            assert_eq!(
                index_quotes(br#"{"a":"b","c":1}"#, &mut quotes, kernel),
                ascii
            );
            let expected = [1, 3, 5, 7, 9, 11]
                .iter()
                .fold(0u64, |bits, i| bits | (1 << i));
            assert_eq!(quotes, vec![expected], "{kernel:?}");
        }
    }
    /// Every kernel the CPU runs marks exactly what the byte-by-byte one marks, on random
    /// blocks dense in the bytes that matter (quote, backslash, 0x1f/0x20, 0x7f/0x80, 0xff),
    /// and on blocks of ordinary text with at most one of them (the kernels' shortcut for a
    /// block without backslashes, control characters or non-ASCII bytes, and its way out).
    #[test]
    fn every_stage_one_kernel_agrees_with_the_portable_one() {
        let kernels = StageOne::available();
        assert_eq!(kernels[0], StageOne::Portable);
        let edges = [b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff, b'a'];
        let mut rng = fastrand::Rng::with_seed(7);
        // Fewer under Miri (`cargo miri test`), which checks every access of the unsafe
        // kernels but runs them about a thousand times slower.
        let rounds = if cfg!(miri) { 600 } else { 30_000 };
        for round in 0..rounds {
            let mut block = [0u8; 64];
            for b in &mut block {
                *b = match round % 3 {
                    0 => edges[rng.usize(..edges.len())],
                    1 => rng.u8(..),
                    _ => rng.u8(b' '..0x80),
                };
            }
            if round % 3 == 2 && rng.bool() {
                block[rng.usize(..64)] = edges[rng.usize(..edges.len())];
            }
            let expected = block_masks_portable(&block);
            for &kernel in &kernels[1..] {
                assert_eq!(
                    kernel.block_masks(&block),
                    expected,
                    "{kernel:?} on {block:?}"
                );
            }
        }
    }
}
