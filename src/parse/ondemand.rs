//! The parser's fast path: one pass over a record's own bytes that validates it as JSON and
//! keeps the values of the keys a Session needs as it goes (simdjson's "on demand" idea),
//! without building a tape or copying the record.
//!
//! Two stages, as in simdjson. First a SIMD pass over the record marks every quote in a
//! bitmap and checks, for the whole record at once, what makes strings hard (no backslash
//! or control character inside a string) and whether every byte is ASCII (then
//! the record needs no separate UTF-8 validation). Then a scalar pass walks the grammar,
//! jumping from a string's opening quote to its closing one through the bitmap: the next
//! token's position no longer waits on a byte-by-byte scan.
//!
//! It only answers when it is sure. Anything it does not take on — a string escape, a
//! number it does not read exactly (an exponent, `-0`, a negative decimal, more than 18
//! digits), deep nesting, invalid UTF-8, any syntax error — returns `None`, and the record goes to simd-json's tape, which then decides and
//! words every JSON error. So a record the scan accepts is one the tape accepts too, with
//! the same values (the property tests in `tests/parse_props.rs` compare both paths).
//!
//! Stage one lives in `stage_one`; this file is stage two, the grammar walk.

use std::borrow::Cow;

use super::fields::{Field, Keys};

mod stage_one;

pub use self::stage_one::StageOne;
use self::stage_one::{index_quotes, Encoding};

const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

const POWERS_OF_TEN: [i64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// How many of the eight bytes of `word` (first byte lowest) are ASCII digits before the
/// first that is not.
#[inline]
fn leading_digits(word: u64) -> usize {
    // Digits become 0..=9; a byte is flagged when it is 10 or more (the carry out of a
    // flagged byte can only disturb the bytes after it).
    let t = word ^ ASCII_ZEROS;
    let flags = (t.wrapping_add(0x7676_7676_7676_7676) | t) & 0x8080_8080_8080_8080;
    (flags.trailing_zeros() / 8) as usize
}

/// The value of the first `count` (0..=8) bytes of `word`, which are ASCII digits.
#[inline]
fn eight_digits(word: u64, count: usize) -> i64 {
    // Shift the digits to the top and fill the bottom with '0's: the same number as eight
    // digits with leading zeros.
    let shift = 8 * (8 - count as u32);
    let word =
        word.checked_shl(shift).unwrap_or(0) | ASCII_ZEROS.checked_shr(64 - shift).unwrap_or(0);
    let mut v = word - ASCII_ZEROS;
    v = (v * 10 + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    v = (v * 100 + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    v = (v * 10_000 + (v >> 32)) & 0xFFFF_FFFF;
    v as i64
}

/// The keys the classifier reads first, read during the scan: of the record's top-level
/// object, of that object's `data` object, and of the first element of the record's list.
/// The caller keeps them and the classifier borrows them, so that they are never moved.
#[derive(Default)]
pub(super) struct ScannedKeys<'t> {
    top: Keys<'t>,
    nested: Nested<'t>,
}

/// Keys of objects one level down, with the object's position.
#[derive(Default)]
struct Nested<'t> {
    /// The top-level object's `data`, when it is an object (a webhook's Session).
    data: Option<(usize, Keys<'t>)>,
    /// The first element of the record's list (a bare array or a `data` array).
    element: Option<(usize, Keys<'t>)>,
}

/// A record the scan validated.
pub(super) struct Text<'t> {
    scanner: Scanner<'t>,
    root: Field<'t>,
    keys: &'t ScannedKeys<'t>,
}

/// Validates `raw` and reads its keys into `keys`, or `None` when the tape must decide.
pub(super) fn scan<'t>(
    raw: &'t [u8],
    max_depth: usize,
    kernel: StageOne,
    quotes: &'t mut Vec<u64>,
    keys: &'t mut ScannedKeys<'t>,
) -> Option<Text<'t>> {
    // Valid UTF-8 as a whole, so every slice between two ASCII quotes is a `str`.
    let text = match index_quotes(raw, quotes, kernel)? {
        // SAFETY: bytes below 0x80 are each a whole UTF-8 character.
        Encoding::Ascii => unsafe { std::str::from_utf8_unchecked(raw) },
        Encoding::Other => simdutf8::basic::from_utf8(raw).ok()?,
    };
    let scanner = Scanner {
        text,
        bytes: raw,
        quotes,
        max_depth,
    };
    let start = scanner.whitespace(0);
    let (root, end) = match raw.get(start)? {
        b'{' => {
            let end = scanner.object(start, 1, Some(&mut keys.top), Some(&mut keys.nested))?;
            (Field::Object(start), end)
        }
        b'[' => {
            let (len, end) = scanner.array(start, 1, Some(&mut keys.nested.element))?;
            (Field::Array(start, len), end)
        }
        // A top-level scalar is never a record; the tape words that error.
        _ => return None,
    };
    (scanner.whitespace(end) == raw.len()).then_some(Text {
        scanner,
        root,
        keys,
    })
}

impl<'t> Text<'t> {
    pub(super) fn root(&self) -> Field<'t> {
        self.root
    }

    /// The keys of the object at byte `at`: kept from the scan for the top level and its
    /// `data`, read again for list elements.
    pub(super) fn keys(&self, at: usize) -> Cow<'_, Keys<'t>> {
        if self.root == Field::Object(at) {
            return Cow::Borrowed(&self.keys.top);
        }
        for (nested_at, keys) in [&self.keys.nested.data, &self.keys.nested.element]
            .into_iter()
            .flatten()
        {
            if *nested_at == at {
                return Cow::Borrowed(keys);
            }
        }
        let mut keys = Keys::default();
        // Already validated: this cannot fail, and if it did the keys would stay empty.
        let _ = self.scanner.object(at, 0, Some(&mut keys), None);
        Cow::Owned(keys)
    }

    /// The value that starts at byte `at` (already validated: objects are not read again).
    pub(super) fn field_at(&self, at: usize) -> Field<'t> {
        match self.scanner.bytes.get(at) {
            Some(b'{') => Field::Object(at),
            _ => self
                .scanner
                .value(at, 0)
                .map_or(Field::Null, |(field, _)| field),
        }
    }

    pub(super) fn first_element(&self, array: usize) -> usize {
        self.scanner.whitespace(array + 1)
    }

    /// The start of the element after the one at `at`: past it, the comma and whitespace.
    pub(super) fn next_element(&self, at: usize) -> usize {
        let end = self.scanner.value(at, 0).map_or(at, |(_, end)| end);
        let comma = self.scanner.whitespace(end);
        self.scanner.whitespace(comma + 1)
    }
}

/// A place in the quote bitmap, kept in registers by [`Scanner::skip_object`]'s walk of
/// one object: the quotes of word `word` from the current one on (`bits` zero: past the
/// last quote of the record). The object's keys' and string values' quotes are each the
/// cursor's next, so finding one does not wait for a load of the bitmap at the position
/// the one before gave (that chain bounded the walk); the grammar still checks that each
/// quote is where it must be, off the chain. A nested container moves the cursor past its
/// end. (The same cursor in the walks that keep keys and values, `object` and `array`,
/// measured slower: webhook 54.0–55.0 against 50.0–50.3 µs.)
#[derive(Copy, Clone)]
struct QuoteCursor {
    word: usize,
    bits: u64,
}

impl QuoteCursor {
    /// The cursor at the first quote at or after byte `at`.
    #[inline(always)]
    fn at_or_after(quotes: &[u64], at: usize) -> QuoteCursor {
        let word = at / 64;
        let bits = quotes.get(word).map_or(0, |&w| w & (u64::MAX << (at % 64)));
        QuoteCursor::first_from(quotes, word, bits)
    }

    /// The first quote of `bits` (quotes of word `word`) or of a later word.
    #[inline(always)]
    fn first_from(quotes: &[u64], mut word: usize, mut bits: u64) -> QuoteCursor {
        while bits == 0 {
            word += 1;
            match quotes.get(word) {
                Some(&next) => bits = next,
                None => return QuoteCursor { word, bits: 0 },
            }
        }
        QuoteCursor { word, bits }
    }

    /// The string whose opening quote is at `open`, which must be the cursor's: the position
    /// of its closing quote, the cursor moved past it. `None` when `open` is not the
    /// cursor's quote (nor, so, a quote) or the string has no end.
    #[inline(always)]
    fn string(&mut self, open: usize, quotes: &[u64]) -> Option<usize> {
        if !self.is_at(open) {
            return None;
        }
        let close = self.next(quotes);
        if close.is_past_last() {
            return None;
        }
        *self = close.next(quotes);
        Some(close.position())
    }

    /// Whether the cursor's quote is at byte `at`.
    #[inline(always)]
    fn is_at(self, at: usize) -> bool {
        !self.is_past_last() && self.position() == at
    }

    #[inline(always)]
    fn is_past_last(self) -> bool {
        self.bits == 0
    }

    /// The position of the cursor's quote (meaningless past the last).
    #[inline(always)]
    fn position(self) -> usize {
        self.word * 64 + self.bits.trailing_zeros() as usize
    }

    /// The cursor at the next quote (past the last when there is none); `self` is at one.
    #[inline(always)]
    fn next(self, quotes: &[u64]) -> QuoteCursor {
        QuoteCursor::first_from(quotes, self.word, self.bits & self.bits.wrapping_sub(1))
    }
}

/// Where the walk of a container goes after its opening bracket or one of its members.
#[derive(Copy, Clone)]
enum Next {
    /// A member starts here.
    Member(usize),
    /// The container is done: the position after its closing bracket.
    End(usize),
}

/// The validating reader. Every method takes a byte position and returns the position
/// after what it read, or `None` to hand the record to the tape.
#[derive(Copy, Clone)]
struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    /// Stage one's bitmap: bit `i % 64` of word `i / 64` is set when byte `i` is a quote.
    quotes: &'t [u64],
    max_depth: usize,
}

impl<'t> Scanner<'t> {
    #[inline]
    fn whitespace(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(at) {
            at += 1;
        }
        at
    }

    /// The object whose `{` is at `open`, `depth` levels deep. Its keys go to `keys`; at the
    /// top level, `data`'s object or first element has its keys read into `nested`.
    fn object(
        &self,
        open: usize,
        depth: usize,
        mut keys: Option<&mut Keys<'t>>,
        mut nested: Option<&mut Nested<'t>>,
    ) -> Option<usize> {
        let mut at = match self.enter(open, depth, b'}')? {
            Next::Member(first) => first,
            Next::End(end) => return Some(end),
        };
        loop {
            let (close, value) = self.key(at)?;
            // Keys are compared as bytes; only values we keep become `str`s.
            let key = self.bytes.get(at + 1..close)?;
            at = value;
            let end = match nested.as_deref_mut() {
                Some(nested) if key == b"data" && self.bytes.get(at) == Some(&b'{') => {
                    let (_, inner) = nested.data.insert((at, Keys::default()));
                    let end = self.object(at, depth + 1, Some(inner), None)?;
                    if let Some(keys) = keys.as_deref_mut() {
                        keys.set(key, Field::Object(at));
                    }
                    end
                }
                Some(nested) if key == b"data" && self.bytes.get(at) == Some(&b'[') => {
                    let (len, end) = self.array(at, depth + 1, Some(&mut nested.element))?;
                    if let Some(keys) = keys.as_deref_mut() {
                        keys.set(key, Field::Array(at, len));
                    }
                    end
                }
                _ => match keys.as_deref_mut().and_then(|keys| keys.slot(key)) {
                    Some(slot) => {
                        let (value, end) = self.value(at, depth)?;
                        *slot = (value != Field::Null).then_some(value);
                        end
                    }
                    None => self.skip(at, depth)?,
                },
            };
            at = match self.next_member(end, b'}')? {
                Next::Member(next) => next,
                Next::End(end) => return Some(end),
            };
        }
    }

    /// The array whose `[` is at `open`: its length and end. The keys of its first element,
    /// when that is an object, go to `first`.
    fn array(
        &self,
        open: usize,
        depth: usize,
        mut first: Option<&mut Option<(usize, Keys<'t>)>>,
    ) -> Option<(usize, usize)> {
        let mut at = match self.enter(open, depth, b']')? {
            Next::Member(first) => first,
            Next::End(end) => return Some((0, end)),
        };
        let mut len = 0;
        loop {
            let end = match first.take() {
                Some(first) if self.bytes.get(at) == Some(&b'{') => {
                    let (_, keys) = first.insert((at, Keys::default()));
                    self.object(at, depth + 1, Some(keys), None)?
                }
                _ => self.skip(at, depth)?,
            };
            len += 1;
            at = match self.next_member(end, b']')? {
                Next::Member(next) => next,
                Next::End(end) => return Some((len, end)),
            };
        }
    }

    /// Validates the object whose `{` is at `open` without reading its keys: its end.
    /// [`Scanner::object`] without the key bookkeeping, for the objects a Session does not
    /// need (most of a webhook's bytes are its `user`); measured 6% faster on the webhook
    /// group than walking them with `object`. Its quotes come from a [`QuoteCursor`]
    /// (webhook group 56.2–56.7 → 50.0–50.3 µs).
    fn skip_object(&self, open: usize, depth: usize) -> Option<usize> {
        let mut at = match self.enter(open, depth, b'}')? {
            Next::Member(first) => first,
            Next::End(end) => return Some(end),
        };
        let mut quotes = QuoteCursor::at_or_after(self.quotes, at);
        loop {
            let value = self.past_colon(quotes.string(at, self.quotes)?)?;
            let end = match self.bytes.get(value)? {
                b'"' => quotes.string(value, self.quotes)? + 1,
                b'{' | b'[' => {
                    let end = self.skip(value, depth)?;
                    quotes = QuoteCursor::at_or_after(self.quotes, end);
                    end
                }
                // Scalars hold no quote: the cursor stays.
                _ => self.skip(value, depth)?,
            };
            at = match self.next_member(end, b'}')? {
                Next::Member(next) => next,
                Next::End(end) => return Some(end),
            };
        }
    }

    /// Validates the array whose `[` is at `open` without counting it: its end.
    fn skip_array(&self, open: usize, depth: usize) -> Option<usize> {
        let mut at = match self.enter(open, depth, b']')? {
            Next::Member(first) => first,
            Next::End(end) => return Some(end),
        };
        loop {
            let end = self.skip(at, depth)?;
            at = match self.next_member(end, b']')? {
                Next::Member(next) => next,
                Next::End(end) => return Some(end),
            };
        }
    }

    /// Past the opening bracket at `open` of a container `depth` levels deep: its first
    /// member, or its end when `close` comes first (empty); `None` beyond the depth limit.
    #[inline(always)]
    fn enter(&self, open: usize, depth: usize, close: u8) -> Option<Next> {
        if depth > self.max_depth {
            return None;
        }
        let at = self.whitespace(open + 1);
        Some(if self.bytes.get(at) == Some(&close) {
            Next::End(at + 1)
        } else {
            Next::Member(at)
        })
    }

    /// After a member that ends at `end`: the next member past a comma, or the container's
    /// end past `close`; `None` for anything else.
    #[inline(always)]
    fn next_member(&self, end: usize, close: u8) -> Option<Next> {
        let at = self.whitespace(end);
        match self.bytes.get(at) {
            Some(b',') => Some(Next::Member(self.whitespace(at + 1))),
            Some(&b) if b == close => Some(Next::End(at + 1)),
            _ => None,
        }
    }

    /// The key whose opening quote is at `at`, and its colon: the key's closing quote and
    /// where its value starts.
    #[inline(always)]
    fn key(&self, at: usize) -> Option<(usize, usize)> {
        if self.bytes.get(at) != Some(&b'"') {
            return None;
        }
        let close = self.string_end(at)?;
        Some((close, self.past_colon(close)?))
    }

    /// After a key whose closing quote is at `close`: past its colon, where its value starts.
    #[inline(always)]
    fn past_colon(&self, close: usize) -> Option<usize> {
        let colon = self.whitespace(close + 1);
        if self.bytes.get(colon) != Some(&b':') {
            return None;
        }
        Some(self.whitespace(colon + 1))
    }

    /// The value starting at `at`, inside a container `depth` levels deep.
    #[inline]
    fn value(&self, at: usize, depth: usize) -> Option<(Field<'t>, usize)> {
        match self.bytes.get(at)? {
            b'"' => self.string(at).map(|(s, end)| (Field::Str(s), end)),
            b'{' => {
                let end = self.skip_object(at, depth + 1)?;
                Some((Field::Object(at), end))
            }
            b'[' => {
                let (len, end) = self.array(at, depth + 1, None)?;
                Some((Field::Array(at, len), end))
            }
            b't' => self.literal(at, b"true", Field::Bool),
            b'f' => self.literal(at, b"false", Field::Bool),
            b'n' => self.literal(at, b"null", Field::Null),
            b'-' | b'0'..=b'9' => self.number(at),
            _ => None,
        }
    }

    #[inline(always)]
    fn literal(&self, at: usize, word: &[u8], field: Field<'t>) -> Option<(Field<'t>, usize)> {
        let end = at + word.len();
        (self.bytes.get(at..end) == Some(word)).then_some((field, end))
    }

    /// Validates the value starting at `at` without keeping it: its end.
    #[inline(always)]
    fn skip(&self, at: usize, depth: usize) -> Option<usize> {
        match self.bytes.get(at)? {
            b'"' => self.string_end(at).map(|close| close + 1),
            b'{' => self.skip_object(at, depth + 1),
            b'[' => self.skip_array(at, depth + 1),
            b't' => self.literal(at, b"true", Field::Bool).map(|(_, end)| end),
            b'f' => self.literal(at, b"false", Field::Bool).map(|(_, end)| end),
            b'n' => self.literal(at, b"null", Field::Null).map(|(_, end)| end),
            b'-' | b'0'..=b'9' => self.number_end(at),
            _ => None,
        }
    }

    /// The position of the closing quote of the string whose opening quote is at `open`:
    /// the next quote in the bitmap (stage one ruled out escapes and control characters).
    #[inline(always)]
    fn string_end(&self, open: usize) -> Option<usize> {
        let start = open + 1;
        let mut word = start / 64;
        let mut bits = self.quotes.get(word)? & (u64::MAX << (start % 64));
        while bits == 0 {
            word += 1;
            bits = *self.quotes.get(word)?;
        }
        Some(word * 64 + bits.trailing_zeros() as usize)
    }

    /// The string whose opening quote is at `open`: its content and the position after the
    /// closing quote.
    #[inline]
    fn string(&self, open: usize) -> Option<(&'t str, usize)> {
        let close = self.string_end(open)?;
        Some((self.text.get(open + 1..close)?, close + 1))
    }

    /// The run of ASCII digits at `start`: its value and end, eight digits at a time (SWAR);
    /// `None` beyond 18 digits. Without `keep` (a value skipped), only the run's end is
    /// found: the value is 0.
    #[inline(always)]
    fn digits(&self, start: usize, keep: bool) -> Option<(i64, usize)> {
        // Up to 15 digits (Clerk's millisecond timestamps have 13) from two words read at
        // once: the second word's digits do not wait on the first's value.
        if let Some(chunk) = self.bytes.get(start..start + 16) {
            let (low, high) = chunk.split_at(8);
            let low = u64::from_le_bytes(low.try_into().ok()?);
            let high = u64::from_le_bytes(high.try_into().ok()?);
            let count = leading_digits(low);
            if count < 8 {
                let value = if keep { eight_digits(low, count) } else { 0 };
                return Some((value, start + count));
            }
            let more = leading_digits(high);
            if more < 8 {
                let value = if keep {
                    eight_digits(low, 8) * POWERS_OF_TEN[more] + eight_digits(high, more)
                } else {
                    0
                };
                return Some((value, start + 8 + more));
            }
        }
        let mut value: i64 = 0;
        let mut at = start;
        while let Some(chunk) = self.bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().ok()?);
            let count = leading_digits(word);
            if count > 0 {
                value = value
                    .checked_mul(POWERS_OF_TEN[count])?
                    .checked_add(eight_digits(word, count))?;
            }
            at += count;
            if at - start > 18 {
                return None;
            }
            if count < 8 {
                return Some((value, at));
            }
        }
        while let Some(digit) = self.bytes.get(at).filter(|b| b.is_ascii_digit()) {
            // Checked: a 19th digit overflows before the length check below refuses it.
            value = value
                .checked_mul(10)?
                .checked_add(i64::from(digit - b'0'))?;
            at += 1;
            if at - start > 18 {
                return None;
            }
        }
        Some((value, at))
    }

    /// A number: integers of up to 18 digits exactly (they fit an `i64`), decimals of up to
    /// 17 digits without an exponent; anything else goes to the tape.
    fn number(&self, start: usize) -> Option<(Field<'t>, usize)> {
        self.read_number(start, true)
    }

    /// Validates the number at `start` like [`Scanner::number`]: its end.
    fn number_end(&self, start: usize) -> Option<usize> {
        self.read_number(start, false).map(|(_, end)| end)
    }

    /// [`Scanner::number`], or with `keep` false only its validation (the field is then
    /// not the number's value).
    #[inline(always)]
    fn read_number(&self, start: usize, keep: bool) -> Option<(Field<'t>, usize)> {
        let bytes = self.bytes;
        let negative = bytes.get(start) == Some(&b'-');
        let digits_start = start + usize::from(negative);
        let (value, mut at) = self.digits(digits_start, keep)?;
        let digits = at - digits_start;
        let leading_zero = bytes.get(digits_start) == Some(&b'0');
        // A leading zero only as the whole integer part, and never "-0" (the tape's `-0`
        // is a float).
        if digits == 0 || leading_zero && (digits > 1 || negative) {
            return None;
        }
        match bytes.get(at) {
            Some(b'e' | b'E') => None,
            Some(b'.') => {
                let fraction_start = at + 1;
                at = fraction_start;
                while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                let fraction = at - fraction_start;
                if fraction == 0 || digits + fraction > 17 || negative {
                    return None;
                }
                if let Some(b'e' | b'E') = bytes.get(at) {
                    return None;
                }
                if !keep {
                    return Some((Field::Float(0.0), at));
                }
                let parsed = self.text.get(start..at)?.parse().ok()?;
                Some((Field::Float(parsed), at))
            }
            _ => Some((Field::Int(if negative { -value } else { value }), at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(bytes: &[u8; 8]) -> u64 {
        u64::from_le_bytes(*bytes)
    }

    #[test]
    fn leading_digits_stop_at_the_first_other_byte() {
        assert_eq!(leading_digits(word(b"12345678")), 8);
        assert_eq!(leading_digits(word(b"1716883,")), 7);
        assert_eq!(leading_digits(word(b"0}      ")), 1);
        assert_eq!(leading_digits(word(b",1234567")), 0);
        // Bytes next to the digits in ASCII, and high bytes, are not digits.
        assert_eq!(leading_digits(word(b"12/:\xff\x8a99")), 2);
        assert_eq!(
            leading_digits(word(b"9\xff2345678"[..8].try_into().unwrap())),
            1
        );
    }

    #[test]
    fn eight_digits_reads_any_prefix_length() {
        let digits = word(b"17168832");
        for count in 0..=8 {
            let expected: i64 = std::str::from_utf8(&b"17168832"[..count])
                .unwrap()
                .parse()
                .unwrap_or(0);
            assert_eq!(eight_digits(digits, count), expected, "{count}");
        }
        assert_eq!(eight_digits(word(b"00000000"), 8), 0);
        assert_eq!(eight_digits(word(b"99999999"), 8), 99_999_999);
    }

    #[test]
    fn skipped_objects_are_walked_with_the_quote_cursor_to_their_end() {
        let long = "x".repeat(70);
        let accepted = [
            // The last quote of the record is a key's: the cursor ends past it.
            r#"{"a":{"b":1}}"#.to_owned(),
            r#"{"a":{"b":{},"c":[],"d":null,"e":true,"f":2.5}}"#.to_owned(),
            // A string and a key that cross 64-byte words; nested containers move the cursor.
            format!(
                r#"{{"a":{{"b":"{long}","{long}":{{"c":"d"}},"e":["f",{{"g":"h"}}],"i":"j"}}}}"#
            ),
            r#"{ "a" : { "b" : "c" , "d" : [ "e" ] , "f" : 1 } }"#.to_owned(),
        ];
        let refused = [
            // A key without its quotes, a string value unterminated, no colon, no comma.
            r#"{"a":{b:1}}"#,
            r#"{"a":{"b":"c}}"#,
            r#"{"a":{"b" "c"}}"#,
            r#"{"a":{"b":1 "c":2}}"#,
        ];
        let scans = |raw: &[u8], kernel| {
            let mut quotes = Vec::new();
            let mut keys = ScannedKeys::default();
            scan(raw, 64, kernel, &mut quotes, &mut keys).is_some()
        };
        for kernel in StageOne::available() {
            for raw in &accepted {
                assert!(scans(raw.as_bytes(), kernel), "{kernel:?} {raw}");
            }
            for raw in refused {
                assert!(!scans(raw.as_bytes(), kernel), "{kernel:?} {raw}");
            }
        }
    }

    /// Stage one lets a backslash outside strings through (it only matters inside one), and
    /// the grammar walk refuses it, wherever it stands, so the tape words the error.
    #[test]
    fn a_backslash_outside_strings_goes_to_the_tape() {
        for kernel in StageOne::available() {
            for raw in [
                &br#"{"a":1\}"#[..],
                br#"{\"a":1}"#,
                br#"{"a":\"b"}"#,
                br#"{"a":[1,\2]}"#,
                br#"{"a":1}\"#,
            ] {
                let mut quotes = Vec::new();
                assert!(
                    index_quotes(raw, &mut quotes, kernel).is_some(),
                    "{kernel:?}"
                );
                let mut keys = ScannedKeys::default();
                assert!(
                    scan(raw, 64, kernel, &mut quotes, &mut keys).is_none(),
                    "{kernel:?} {}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }
}
