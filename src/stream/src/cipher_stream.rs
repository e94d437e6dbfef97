//! XChaCha20-Poly1305 computed as the plaintext arrives: the open chunk's ciphertext is written
//! to `<index>.bin` package by package (see [`crate::open_chunk`]) and the tag appended when the
//! chunk is sealed, so a streamed package is written to disk once, as ciphertext.
//!
//! The result is byte for byte what [`crate::crypto::xchacha_encrypt`] gives for the whole
//! plaintext (AEAD construction of draft-irtf-cfrg-xchacha / RFC 8439 §2.8 with no AAD: the
//! Poly1305 key is the first 32 bytes of keystream block 0, the plaintext is encrypted from block
//! 1, the tag covers `ct || pad16 || le64(0) || le64(len(ct))`). XChaCha20 is seekable, so any
//! range of the ciphertext decrypts on its own ([`decrypt_range`]); that range is not
//! authenticated by the tag (a sealed chunk's tag covers it all), so the readers of a range check
//! it against the SHA-256 its reference carries.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::XChaCha20;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;
use zeroize::Zeroizing;

use crate::crypto::{CHUNK_KEY_LEN, TAG_LEN, XCHACHA_NONCE_LEN};

const BLOCK: usize = 16;
/// The plaintext starts at keystream block 1 (block 0 keys Poly1305).
const PAYLOAD_START: u64 = 64;

/// What sealing needs from a finished stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Finished {
    /// The Poly1305 tag to append to the ciphertext.
    pub tag: [u8; TAG_LEN],
    /// `sha256(ct || tag)`: the envelope's `encrypted_data_hash`.
    pub encrypted_data_hash: [u8; 32],
    /// `sha256(plaintext)`: the envelope's `plaintext_hash`.
    pub plaintext_hash: [u8; 32],
    /// Ciphertext length without the tag (= plaintext length).
    pub ciphertext_len: u64,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished").field("ciphertext_len", &self.ciphertext_len).finish_non_exhaustive()
    }
}

/// Incremental XChaCha20-Poly1305 encryption of one chunk, with the two hashes its envelope
/// needs. Cloning it is cheap (a checkpoint to roll back to).
pub struct ChunkCipherStream {
    key: Zeroizing<[u8; CHUNK_KEY_LEN]>,
    nonce: [u8; XCHACHA_NONCE_LEN],
    cipher: XChaCha20,
    mac: Poly1305,
    pending: [u8; BLOCK],
    pending_len: usize,
    len: u64,
    ct_hash: ring::digest::Context,
    pt_hash: ring::digest::Context,
}

impl Clone for ChunkCipherStream {
    fn clone(&self) -> Self {
        // The keystream is not `Clone`: a new one, seeked to the same position.
        let mut cipher = XChaCha20::new(self.key.as_ref().into(), (&self.nonce).into());
        cipher.seek(PAYLOAD_START + self.len);
        ChunkCipherStream {
            key: self.key.clone(),
            nonce: self.nonce,
            cipher,
            mac: self.mac.clone(),
            pending: self.pending,
            pending_len: self.pending_len,
            len: self.len,
            ct_hash: self.ct_hash.clone(),
            pt_hash: self.pt_hash.clone(),
        }
    }
}

impl ChunkCipherStream {
    /// A stream at the start of the chunk.
    pub fn new(key: &[u8; CHUNK_KEY_LEN], nonce: &[u8; XCHACHA_NONCE_LEN]) -> ChunkCipherStream {
        let mut cipher = XChaCha20::new(key.into(), nonce.into());
        let mut mac_key = Zeroizing::new([0u8; 32]);
        cipher.apply_keystream(mac_key.as_mut());
        let mac = Poly1305::new(&(*mac_key).into());
        cipher.seek(PAYLOAD_START);
        ChunkCipherStream {
            key: Zeroizing::new(*key),
            nonce: *nonce,
            cipher,
            mac,
            pending: [0; BLOCK],
            pending_len: 0,
            len: 0,
            ct_hash: ring::digest::Context::new(&ring::digest::SHA256),
            pt_hash: ring::digest::Context::new(&ring::digest::SHA256),
        }
    }

    /// A stream continuing after `ciphertext` (what an open chunk's file holds after a restart);
    /// returns it with the plaintext of `ciphertext`.
    pub fn resume(
        key: &[u8; CHUNK_KEY_LEN],
        nonce: &[u8; XCHACHA_NONCE_LEN],
        ciphertext: &[u8],
    ) -> (ChunkCipherStream, Zeroizing<Vec<u8>>) {
        let mut s = ChunkCipherStream::new(key, nonce);
        let mut pt = Zeroizing::new(ciphertext.to_vec());
        s.cipher.apply_keystream(&mut pt);
        s.pt_hash.update(&pt);
        s.absorb_ciphertext(ciphertext);
        (s, pt)
    }

    /// Ciphertext bytes so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Encrypt the next plaintext bytes in place (they become the next ciphertext bytes).
    pub fn encrypt_in_place(&mut self, buf: &mut [u8]) {
        self.pt_hash.update(buf);
        self.cipher.apply_keystream(buf);
        self.absorb_ciphertext(buf);
    }

    /// Encrypt one package line and its `\n`: returns the ciphertext and `sha256(line)` (what a
    /// reference to the line carries). For a large line the two plaintext hashes run on a helper
    /// thread while this one encrypts and authenticates, so the packaging thread is not held up
    /// by six passes over the bytes in a row.
    pub fn encrypt_line(&mut self, line: &[u8]) -> (Zeroizing<Vec<u8>>, [u8; 32]) {
        let mut buf = Zeroizing::new(Vec::with_capacity(line.len() + 1));
        buf.extend_from_slice(line);
        buf.push(b'\n');
        if line.len() < PARALLEL_FROM {
            let digest = crate::crypto::sha256(line);
            self.encrypt_in_place(&mut buf);
            return (buf, digest);
        }
        let pt_hash = &mut self.pt_hash;
        let digest = std::thread::scope(|s| {
            let h = s.spawn(move || {
                pt_hash.update(line);
                pt_hash.update(b"\n");
                crate::crypto::sha256(line)
            });
            self.cipher.apply_keystream(&mut buf);
            absorb(&mut self.mac, &mut self.ct_hash, &mut self.pending, &mut self.pending_len, &mut self.len, &buf);
            h.join()
        });
        match digest {
            Ok(d) => (buf, d),
            // The helper only hashes; should it panic all the same, hash here instead.
            Err(_) => (buf, crate::crypto::sha256(line)),
        }
    }

    fn absorb_ciphertext(&mut self, ct: &[u8]) {
        absorb(&mut self.mac, &mut self.ct_hash, &mut self.pending, &mut self.pending_len, &mut self.len, ct);
    }

    /// The tag and hashes of the ciphertext so far (the stream itself is left as it is, so a seal
    /// that fails can be retried).
    pub fn finish(&self) -> Finished {
        let mut mac = self.mac.clone();
        if self.pending_len > 0 {
            mac.update_padded(&self.pending[..self.pending_len]);
        }
        let mut lens = [0u8; BLOCK];
        lens[8..].copy_from_slice(&self.len.to_le_bytes());
        mac.update(&[lens.into()]);
        let tag: [u8; TAG_LEN] = mac.finalize().into();
        let mut ct_hash = self.ct_hash.clone();
        ct_hash.update(&tag);
        Finished {
            tag,
            encrypted_data_hash: digest32(ct_hash.finish()),
            plaintext_hash: digest32(self.pt_hash.clone().finish()),
            ciphertext_len: self.len,
        }
    }
}

/// Lines from this size on are hashed on a helper thread ([`ChunkCipherStream::encrypt_line`]).
const PARALLEL_FROM: usize = 256 * 1024;

/// Feed ciphertext to the tag and the ciphertext hash (the stream's fields, borrowed apart so the
/// plaintext hash can be updated on another thread meanwhile).
fn absorb(
    mac: &mut Poly1305,
    ct_hash: &mut ring::digest::Context,
    pending: &mut [u8; BLOCK],
    pending_len: &mut usize,
    len: &mut u64,
    mut ct: &[u8],
) {
    ct_hash.update(ct);
    *len += ct.len() as u64;
    if *pending_len > 0 {
        let take = (BLOCK - *pending_len).min(ct.len());
        pending[*pending_len..*pending_len + take].copy_from_slice(&ct[..take]);
        *pending_len += take;
        ct = &ct[take..];
        if *pending_len < BLOCK {
            return;
        }
        mac.update(&[(*pending).into()]);
        *pending_len = 0;
    }
    let full = ct.len() / BLOCK * BLOCK;
    // Poly1305 takes blocks: copied through a small reused buffer, never the whole input.
    let mut blocks = [poly1305::Block::default(); 64];
    for group in ct[..full].chunks(BLOCK * blocks.len()) {
        let n = group.len() / BLOCK;
        for (dst, src) in blocks.iter_mut().zip(group.chunks_exact(BLOCK)) {
            dst.copy_from_slice(src);
        }
        mac.update(&blocks[..n]);
    }
    let rest = &ct[full..];
    pending[..rest.len()].copy_from_slice(rest);
    *pending_len = rest.len();
}

fn digest32(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Decrypt `ciphertext`, the chunk's bytes starting at `offset` (no authentication: check the
/// result against a known hash).
pub fn decrypt_range(
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
    offset: u64,
    ciphertext: &[u8],
) -> Zeroizing<Vec<u8>> {
    let mut cipher = XChaCha20::new(key.into(), nonce.into());
    cipher.seek(PAYLOAD_START + offset);
    let mut pt = Zeroizing::new(ciphertext.to_vec());
    cipher.apply_keystream(&mut pt);
    pt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;

    /// Any split of the plaintext into appends gives exactly the one-shot ciphertext and tag, and
    /// both hashes; a resumed stream continues it; any range decrypts alone.
    #[test]
    fn incremental_equals_one_shot() {
        let key = [0x41u8; 32];
        let nonce = [0x42u8; 24];
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 70_001, 300_007] {
            let pt: Vec<u8> = (0..len).map(|i| (i % 200 + 32) as u8).collect();
            let one = crypto::xchacha_encrypt(&key, &nonce, &pt).unwrap();
            for step in [1usize, 5, 16, 33, 4096] {
                let mut s = ChunkCipherStream::new(&key, &nonce);
                let mut ct = Vec::new();
                for piece in pt.chunks(step) {
                    let mut b = piece.to_vec();
                    s.encrypt_in_place(&mut b);
                    ct.extend_from_slice(&b);
                }
                let f = s.finish();
                ct.extend_from_slice(&f.tag);
                assert_eq!(ct, one, "len {len} step {step}");
                assert_eq!(f.encrypted_data_hash, crypto::sha256(&one));
                assert_eq!(f.plaintext_hash, crypto::sha256(&pt));
                assert_eq!(f.ciphertext_len, len as u64);
            }
            if len > 0 && !pt[..len - 1].contains(&b'\n') {
                // encrypt_line: the line and its '\n' (small lines inline, large on two threads).
                let mut s = ChunkCipherStream::new(&key, &nonce);
                let mut line_pt = pt.clone();
                line_pt[len - 1] = b'\n';
                let (ct, digest) = s.encrypt_line(&line_pt[..len - 1]);
                assert_eq!(digest, crypto::sha256(&line_pt[..len - 1]));
                let one_line = crypto::xchacha_encrypt(&key, &nonce, &line_pt).unwrap();
                assert_eq!(&ct[..], &one_line[..len]);
                assert_eq!(s.finish().tag, one_line[len..]);
            }
            let cut = len / 3;
            let (mut r, head) = ChunkCipherStream::resume(&key, &nonce, &one[..cut]);
            assert_eq!(head.as_slice(), &pt[..cut]);
            let mut tail = pt[cut..].to_vec();
            r.encrypt_in_place(&mut tail);
            assert_eq!(&tail[..], &one[cut..len]);
            assert_eq!(r.finish().tag, one[len..]);
            let (a, b) = (len / 4, len / 2);
            assert_eq!(decrypt_range(&key, &nonce, a as u64, &one[a..b]).as_slice(), &pt[a..b]);
        }
    }
}
