//! Incremental UTF-8 validation for text messages.
//!
//! Owns only the up-to-3 bytes of a code point split across chunks. It fails as soon as
//! a byte makes the sequence invalid, even mid-frame, which is what lets the server close
//! with 1007 before the rest of a bad message arrives (Autobahn 6.4.x checks this).

/// Validates a byte stream fed in arbitrary chunks.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The bytes fed so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; errors as soon as the stream is known to be invalid.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let need = sequence_len(self.pending[0]).ok_or(InvalidUtf8)?;
            while (self.pending_len as usize) < need && !bytes.is_empty() {
                self.pending[self.pending_len as usize] = bytes[0];
                self.pending_len += 1;
                bytes = &bytes[1..];
            }
            match std::str::from_utf8(&self.pending[..self.pending_len as usize]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // error_len() == None: the input ends in the valid prefix of a code point.
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: valid only if no code point is left unfinished.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

fn sequence_len(first: u8) -> Option<usize> {
    match first {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunked(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.min(data.len()).max(start);
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_chunking(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            mut cuts in proptest::collection::vec(0usize..64, 0..6),
        ) {
            cuts.sort_unstable();
            prop_assert_eq!(chunked(&data, &cuts).is_ok(), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_strings_pass_any_chunking(s in "\\PC{0,20}", mut cuts in proptest::collection::vec(0usize..80, 0..6)) {
            cuts.sort_unstable();
            prop_assert!(chunked(s.as_bytes(), &cuts).is_ok());
        }
    }

    #[test]
    fn fails_fast_on_bad_continuation() {
        let mut v = Utf8Validator::new();
        // 0xF4 0x90 starts a code point above U+10FFFF: invalid after two bytes.
        assert!(v.feed(&[0xce, 0xba, 0xf4]).is_ok());
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xe2, 0x82]).is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
