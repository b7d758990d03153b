//! LEB128 variable-length integers: the byte codec of packed buckets, pending calls and checkpoints.
//!
//! Small numbers (counts, gaps between sketch bins, deltas between timestamps) take one byte, which
//! is what keeps the engine's state a few dozen bytes per bucket and per call.

/// Why a byte string could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the data ends in the middle of a value")]
    Truncated,
    #[error("a number is longer than 64 bits")]
    Overlong,
    #[error("{0}")]
    Invalid(&'static str),
}

#[inline]
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Most numbers of a packed bucket take one byte: that case is read inline, the rest by
    /// [`Reader::u64_long`].
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        if let Some((&b, rest)) = self.buf.split_first() {
            if b < 0x80 {
                self.buf = rest;
                return Ok(u64::from(b));
            }
        }
        self.u64_long()
    }

    fn u64_long(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(DecodeError::Overlong);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        if self.buf.len() >= 10 {
            Err(DecodeError::Overlong)
        } else {
            Err(DecodeError::Truncated)
        }
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?)
            .map_err(|_| DecodeError::Invalid("a number does not fit 32 bits"))
    }

    pub fn usize(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.u64()?).map_err(|_| DecodeError::Invalid("a length does not fit"))
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.usize()?;
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Invalid("a name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn numbers_round_trip(u in any::<u64>(), i in any::<i64>(), s in ".{0,20}") {
            let mut out = Vec::new();
            put_u64(&mut out, u);
            put_i64(&mut out, i);
            put_bytes(&mut out, s.as_bytes());
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.u64().unwrap(), u);
            prop_assert_eq!(r.i64().unwrap(), i);
            prop_assert_eq!(r.str().unwrap(), s.as_str());
            prop_assert!(r.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Reader::new(&bytes);
            while r.u64().is_ok() {}
            let mut r = Reader::new(&bytes);
            let _ = r.str();
        }
    }

    #[test]
    fn small_numbers_take_one_byte() {
        let mut out = Vec::new();
        put_u64(&mut out, 127);
        put_i64(&mut out, -64);
        assert_eq!(out.len(), 2);
        assert_eq!(Reader::new(&[0x80]).u64(), Err(DecodeError::Truncated));
    }
}
