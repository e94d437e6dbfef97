//! The open chunk on disk as ciphertext: `<index>.bin` grows package by package, encrypted as it
//! is written ([`crate::cipher_stream`]); `<index>.key.json` holds its nonce and its key, wrapped
//! (sealed box) to the machine's X25519 key only, like the envelope's `machine-1` entry. Sealing
//! appends the Poly1305 tag to `<index>.bin`, so the sealed file is exactly the SDK's
//! `ct || tag16` and no byte of the chunk is written twice.
//!
//! ```text
//! <index>.key.json  {"schema":"peaqos.stream.open-key.v1","topic","index","nonce","machinePublicKeyHex",
//!                    "wrappedKeyHex","firstAppendMs"}   (written atomically before <index>.bin exists)
//! <index>.bin       ciphertext of the complete lines appended so far (while open: no tag)
//! ```
//!
//! **Recovery** ([`OpenChunkFile::recover`]): the key is unwrapped with the machine's X25519
//! secret, the file decrypted, and its lines kept from the start as long as each is complete
//! (`\n`-terminated) and accepted by the caller (the node keeps the lines the package log
//! acknowledged); the rest (a torn tail, a line never acknowledged, a tag appended by a seal that
//! did not finish) is cut off and the file synced.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::chain::{ChunkRandom, RandomPurpose};
use crate::cipher_stream::{decrypt_range, ChunkCipherStream, Finished};
use crate::crypto::{self, CHUNK_KEY_LEN, XCHACHA_NONCE_LEN};
use crate::error::{Result, StreamError};
use crate::store;

/// Schema tag of `<index>.key.json`.
pub const OPEN_KEY_SCHEMA: &str = "peaqos.stream.open-key.v1";

/// `<index>.key.json`.
pub fn key_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index}.key.json"))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OpenKey {
    schema: String,
    topic: String,
    index: u64,
    nonce: String,
    machine_public_key_hex: String,
    wrapped_key_hex: String,
    first_append_ms: u64,
}

/// The key and nonce of an open (or sealed) chunk, from its key file.
pub fn load_open_key(
    dir: &Path,
    index: u64,
    machine_secret: &[u8; 32],
) -> Result<(Zeroizing<[u8; CHUNK_KEY_LEN]>, [u8; XCHACHA_NONCE_LEN], SystemTime)> {
    let path = key_path(dir, index);
    let k: OpenKey = store::load_json(&path)?;
    let what = path.display().to_string();
    if k.schema != OPEN_KEY_SCHEMA || k.index != index {
        return Err(StreamError::invalid(what, "not the key file of this open chunk"));
    }
    let nonce = crypto::parse_hex_n::<XCHACHA_NONCE_LEN>(&k.nonce, "nonce")?;
    let sealed = crypto::parse_hex(&k.wrapped_key_hex, "wrappedKeyHex")?;
    let key = crypto::sealed_box_open(&sealed, machine_secret)
        .ok_or_else(|| StreamError::invalid(what.clone(), "the key does not open with this machine's X25519 key"))?;
    let key: [u8; CHUNK_KEY_LEN] =
        key.as_slice().try_into().map_err(|_| StreamError::invalid(what, "wrapped key is not 32 bytes"))?;
    Ok((Zeroizing::new(key), nonce, SystemTime::UNIX_EPOCH + Duration::from_millis(k.first_append_ms)))
}

/// What recovery found in an open chunk file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredOpen {
    /// Complete, accepted lines kept.
    pub messages: u64,
    /// Bytes cut off the end.
    pub cut_bytes: u64,
    /// The last line kept (without `\n`), to resume sequence numbers from.
    pub last_line: Option<Vec<u8>>,
}

/// One open chunk written as ciphertext (see the module doc).
pub struct OpenChunkFile {
    index: u64,
    path: PathBuf,
    file: File,
    key: Zeroizing<[u8; CHUNK_KEY_LEN]>,
    nonce: [u8; XCHACHA_NONCE_LEN],
    stream: ChunkCipherStream,
    messages: u64,
    /// The state at the last [`checkpoint`](Self::checkpoint), to [`rollback`](Self::rollback) to.
    saved: (ChunkCipherStream, u64),
    first_append: SystemTime,
    last_append: SystemTime,
    dirty: bool,
}

impl std::fmt::Debug for OpenChunkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenChunkFile")
            .field("path", &self.path)
            .field("len", &self.stream.len())
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl OpenChunkFile {
    /// Start chunk `index` of `topic` in `dir`: fresh key and nonce, the key file (wrapped to
    /// `machine_public`) written atomically, then an empty `<index>.bin`.
    pub fn create(
        dir: &Path,
        topic: &str,
        index: u64,
        machine_public: &[u8; 32],
        rng: &mut dyn ChunkRandom,
        now: SystemTime,
    ) -> Result<OpenChunkFile> {
        let mut key = Zeroizing::new([0u8; CHUNK_KEY_LEN]);
        rng.fill(RandomPurpose::ChunkKey, key.as_mut())?;
        let mut nonce = [0u8; XCHACHA_NONCE_LEN];
        rng.fill(RandomPurpose::Nonce, &mut nonce)?;
        let mut esk = Zeroizing::new([0u8; 32]);
        rng.fill(RandomPurpose::EphemeralSecret, esk.as_mut())?;
        let k = OpenKey {
            schema: OPEN_KEY_SCHEMA.into(),
            topic: topic.into(),
            index,
            nonce: hex::encode(nonce),
            machine_public_key_hex: hex::encode(machine_public),
            wrapped_key_hex: hex::encode(crypto::sealed_box_seal(key.as_ref(), machine_public, &esk)),
            first_append_ms: store::unix_ms(now),
        };
        let kp = key_path(dir, index);
        store::write_atomic(&kp, &store::to_json_bytes(&k, "open chunk key")?)?;
        let path = store::chunk_paths(dir, index).1;
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StreamError::io("create", &path, e))?;
        store::sync_dir(dir)?;
        let stream = ChunkCipherStream::new(&key, &nonce);
        Ok(OpenChunkFile {
            index,
            path,
            file,
            key,
            nonce,
            saved: (stream.clone(), 0),
            stream,
            messages: 0,
            first_append: now,
            last_append: now,
            dirty: false,
        })
    }

    /// Reopen chunk `index` after a restart (see the module doc): `keep(line)` says whether a
    /// complete line stays; the first one refused and everything after it are cut off.
    pub fn recover(
        dir: &Path,
        index: u64,
        machine_secret: &[u8; 32],
        keep: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(OpenChunkFile, RecoveredOpen)> {
        let (key, nonce, first_append) = load_open_key(dir, index, machine_secret)?;
        let path = store::chunk_paths(dir, index).1;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StreamError::io("open", &path, e))?;
        let ct = store::read(&path)?;
        let pt = decrypt_range(&key, &nonce, 0, &ct);
        let mut good = 0usize;
        let mut messages = 0u64;
        let mut last_line = None;
        while let Some(nl) = pt[good..].iter().position(|&b| b == b'\n') {
            let line = &pt[good..good + nl];
            if line.is_empty() || !keep(line) {
                break;
            }
            last_line = Some(line.to_vec());
            good += nl + 1;
            messages += 1;
        }
        let cut_bytes = (ct.len() - good) as u64;
        if cut_bytes > 0 {
            file.set_len(good as u64).map_err(|e| StreamError::io("truncate", &path, e))?;
            file.sync_all().map_err(|e| StreamError::io("fsync", &path, e))?;
        }
        let (stream, _) = ChunkCipherStream::resume(&key, &nonce, &ct[..good]);
        let last_append = fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(first_append);
        Ok((
            OpenChunkFile {
                index,
                path,
                file,
                key,
                nonce,
                saved: (stream.clone(), messages),
                stream,
                messages,
                first_append,
                last_append,
                dirty: false,
            },
            RecoveredOpen { messages, cut_bytes, last_line },
        ))
    }

    /// Chunk index.
    pub fn index(&self) -> u64 {
        self.index
    }
    /// Plaintext (= ciphertext) bytes so far.
    pub fn len(&self) -> u64 {
        self.stream.len()
    }
    /// True before the first line.
    pub fn is_empty(&self) -> bool {
        self.stream.is_empty()
    }
    /// Lines so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }
    /// When the first line was appended.
    pub fn first_append(&self) -> SystemTime {
        self.first_append
    }
    /// When the last line was appended.
    pub fn last_append(&self) -> SystemTime {
        self.last_append
    }

    /// Encrypt and write one line and its `\n`; returns its offset and `sha256(line)`. Not
    /// durable before [`sync`](Self::sync). A failed write (a full disk) is cut off again.
    pub fn append(&mut self, line: &[u8], now: SystemTime) -> Result<(u64, [u8; 32])> {
        let offset = self.stream.len();
        let before = self.stream.clone();
        let (buf, digest) = self.stream.encrypt_line(line);
        if let Err(e) = self.file.write_all_at(&buf, offset) {
            let _ = self.file.set_len(offset);
            self.stream = before;
            return Err(StreamError::io("append", &self.path, e));
        }
        if self.messages == 0 {
            self.first_append = now;
        }
        self.messages += 1;
        self.last_append = now;
        self.dirty = true;
        Ok((offset, digest))
    }

    /// `fdatasync` what was appended.
    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            self.file.sync_data().map_err(|e| StreamError::io("fsync", &self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Remember the current end as the one to [`rollback`](Self::rollback) to.
    pub fn checkpoint(&mut self) {
        self.saved = (self.stream.clone(), self.messages);
    }

    /// Cut everything appended since the last checkpoint. The next append continues at the
    /// checkpoint even if the file could not be shortened (writes go to explicit offsets, and
    /// [`finish`](Self::finish) sets the file's length; recovery cuts a stale tail too).
    pub fn rollback(&mut self) -> Result<()> {
        let (stream, messages) = self.saved.clone();
        let len = stream.len();
        self.stream = stream;
        self.messages = messages;
        self.file.set_len(len).map_err(|e| StreamError::io("truncate", &self.path, e))?;
        self.file.sync_data().map_err(|e| StreamError::io("fsync", &self.path, e))
    }

    /// The plaintext at `offset..offset + length`.
    pub fn read(&self, offset: u64, length: u64) -> Result<Zeroizing<Vec<u8>>> {
        read_range(&self.file, &self.path, &self.key, &self.nonce, offset, length)
    }

    /// Append the tag and fsync: the file is now the sealed chunk's `ct || tag`. On failure
    /// (a full disk) the tag is cut off again and the chunk stays open.
    pub fn finish(&mut self) -> Result<Finished> {
        let f = self.stream.finish();
        let end = self.stream.len();
        let res = self
            .file
            .write_all_at(&f.tag, end)
            .and_then(|()| self.file.set_len(end + f.tag.len() as u64))
            .and_then(|()| self.file.sync_all());
        if let Err(e) = res {
            let _ = self.file.set_len(end);
            return Err(StreamError::io("seal", &self.path, e));
        }
        Ok(f)
    }

    /// The chunk key and nonce (to build the envelope at seal).
    pub fn key_nonce(&self) -> (&[u8; CHUNK_KEY_LEN], &[u8; XCHACHA_NONCE_LEN]) {
        (&self.key, &self.nonce)
    }

    /// Undo [`finish`](Self::finish) (the envelope could not be written): cut the tag off.
    pub fn unfinish(&mut self) -> Result<()> {
        self.file.set_len(self.stream.len()).map_err(|e| StreamError::io("truncate", &self.path, e))
    }
}

/// Decrypt `length` bytes at plaintext `offset` of a chunk file.
pub fn read_range(
    file: &File,
    path: &Path,
    key: &[u8; CHUNK_KEY_LEN],
    nonce: &[u8; XCHACHA_NONCE_LEN],
    offset: u64,
    length: u64,
) -> Result<Zeroizing<Vec<u8>>> {
    let n = usize::try_from(length).map_err(|_| StreamError::invalid("payload reference", "length too large"))?;
    let mut ct = vec![0u8; n];
    file.read_exact_at(&mut ct, offset).map_err(|e| StreamError::io("read", path, e))?;
    Ok(decrypt_range(key, nonce, offset, &ct))
}
