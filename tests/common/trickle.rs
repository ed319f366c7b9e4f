//! A reader that hands out its bytes a few at a time, as a pipe does: for the tests (and the
//! fuzz target) that replay an input streamed in pieces of every size.

use std::io::{self, Read};

/// Hands out `bytes` at most `most` at a time.
pub struct Trickle<'a> {
    pub bytes: &'a [u8],
    pub most: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.most).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}
