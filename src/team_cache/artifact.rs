//! The stored form of one artifact: its bytes, then a [`Footer`] that says how many there are and
//! what their blake3 digest is, so that any store (a folder, a bucket) can be checked on read
//! without an index or object metadata.

/// Bytes of the footer at the end of every stored artifact.
pub const FOOTER_LEN: u64 = 48;

const MAGIC: &[u8; 8] = b"nxops:a1";

/// Size and digest of an artifact's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub size: u64,
    pub digest: [u8; 32],
}

/// Why stored bytes are not a sound artifact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("no nxops footer ({0} bytes stored)")]
    NoFooter(u64),
    #[error("the footer says {said} bytes, {stored} are stored")]
    WrongSize { said: u64, stored: u64 },
    #[error("the bytes do not match their blake3 digest")]
    WrongDigest,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut out = [0u8; FOOTER_LEN as usize];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.size.to_le_bytes());
        out[16..].copy_from_slice(&self.digest);
        out
    }

    /// Reads the footer of an object of `stored` bytes whose last [`FOOTER_LEN`] bytes are `tail`.
    pub fn decode(tail: &[u8], stored: u64) -> Result<Footer, Damage> {
        if stored < FOOTER_LEN || tail.len() != FOOTER_LEN as usize || &tail[..8] != MAGIC {
            return Err(Damage::NoFooter(stored));
        }
        let size = u64::from_le_bytes(tail[8..16].try_into().expect("8 bytes"));
        if size != stored - FOOTER_LEN {
            return Err(Damage::WrongSize { said: size, stored: stored - FOOTER_LEN });
        }
        Ok(Footer { size, digest: tail[16..].try_into().expect("32 bytes") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_footer_reads_back_what_was_written() {
        let footer = Footer { size: 5, digest: *blake3::hash(b"hello").as_bytes() };
        assert_eq!(Footer::decode(&footer.encode(), 5 + FOOTER_LEN), Ok(footer));
    }

    #[test]
    fn a_cut_or_foreign_object_has_no_sound_footer() {
        let footer = Footer { size: 5, digest: [7; 32] };
        assert_eq!(Footer::decode(&footer.encode(), 4 + FOOTER_LEN), Err(Damage::WrongSize { said: 5, stored: 4 }));
        assert_eq!(Footer::decode(&[0; 48], 100), Err(Damage::NoFooter(100)));
        assert_eq!(Footer::decode(b"short", 5), Err(Damage::NoFooter(5)));
    }
}
