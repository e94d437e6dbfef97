//! `peaqos-stream`: offline tool for peaqOS stream chunk directories. Usage: [`HELP`] (what
//! `peaqos-stream --help` prints).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use peaqos_stream::dataset::{
    build_dataset, verify_dataset, verify_proof, write_dataset, DatasetManifest, InclusionProof,
};
use peaqos_stream::grant::{
    build_buyer_access_files, decrypt_with_grants, grant, load_grant_file, write_buyer_access_files, GrantRange,
    DEFAULT_BUYER_RECIPIENT_ID,
};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::storage::{destination, upload_pending, DestinationConfig};
use peaqos_stream::verify::verify_dir;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};
use peaqos_stream::{crypto, store, StreamError};
use zeroize::Zeroizing;

/// What `peaqos-stream --help` prints: plain text, for a terminal.
const HELP: &str = "\
peaqos-stream: offline tool for the node's encrypted chunk streams

  peaqos-stream verify <dir> [--signer-pk HEX]
      <dir> is the node's data_dir, a folder of topic directories (<data_dir>/stream),
      or one topic directory.
  peaqos-stream decrypt --grant F [--grant F...] --secret-key-file F <topic_dir> [--out DIR]
  peaqos-stream export --secret-key-file F [--grant F...] [--storage F.json] [--dataset F]
                       [--signer-pk HEX] [--ros-type TOPIC=TYPE...] [--allow-unverified]
                       [--no-compression] --out F.mcap <dir>...
      verifies everything, then writes one MCAP file (one JSON channel per topic); <dir> as
      for verify; --storage reads the ciphertexts through the envelopes' storage references
  peaqos-stream grant --data-dir D --topic T --buyer-pk HEX --range A..B|t:MS..MS
                      [--buyer-id ID] [--out DIR] [--max-file-size BYTES] [--key-file F]
  peaqos-stream dataset --data-dir D --topic T --range A..B [--did DID] [--key-file F] [--out F]
  peaqos-stream prove --dataset F --chunk ID [--out F]
  peaqos-stream verify-proof --proof F [--dataset F]
  peaqos-stream keys [--key-file F]
  peaqos-stream append --data-dir D --topic T [--did DID] [--key-id ID] [--owner-pk HEX]
                       [--operator-pk HEX] [--max-messages N] [--max-bytes N] [--key-file F]
      reads signed package lines from stdin into the topic's chain, seals the rest at EOF
  peaqos-stream upload --data-dir D --topic T --destination F.json
      uploads pending sealed chunks (F = a DestinationConfig JSON, e.g. {\"kind\":\"local\"})

--data-dir D is the node's data_dir (the node's parameter of that name): the chains are in
D/stream/<topic dir>. D = <data_dir>/stream itself is accepted too.
The machine key (grant, dataset, keys, append) is the secp256k1 secret in hex, from --key-file
or the PEAQOS_PRIVATE_KEY environment variable. Secret key files hold hex (optional 0x).
Exit codes: 0 success, 1 a check or operation failed (the message names the chunk and the
check), 2 usage error.";

enum CliError {
    Usage(String),
    Failed(String),
}

impl From<StreamError> for CliError {
    fn from(e: StreamError) -> Self {
        CliError::Failed(e.to_string())
    }
}

type R<T> = Result<T, CliError>;

/// Options that take no value.
const BOOL_FLAGS: &[&str] = &["allow-unverified", "no-compression"];

struct Args {
    pos: Vec<String>,
    opts: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse(raw: &[String], flags_with_value: &[&str]) -> R<Args> {
        let mut pos = Vec::new();
        let mut opts: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (name.to_string(), None),
                };
                if BOOL_FLAGS.contains(&name.as_str()) && flags_with_value.contains(&name.as_str()) {
                    opts.entry(name).or_default().push("true".into());
                    continue;
                }
                if !flags_with_value.contains(&name.as_str()) {
                    return Err(CliError::Usage(format!("unknown option --{name}")));
                }
                let v = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| CliError::Usage(format!("--{name} needs a value")))?,
                };
                opts.entry(name).or_default().push(v);
            } else {
                pos.push(a.clone());
            }
        }
        Ok(Args { pos, opts })
    }
    fn one(&self, n: &str) -> Option<&str> {
        self.opts.get(n).and_then(|v| v.last()).map(String::as_str)
    }
    fn req(&self, n: &str) -> R<&str> {
        self.one(n).ok_or_else(|| CliError::Usage(format!("missing --{n}")))
    }
    fn flag(&self, n: &str) -> bool {
        self.opts.contains_key(n)
    }
    fn all(&self, n: &str) -> Vec<&str> {
        self.opts.get(n).map(|v| v.iter().map(String::as_str).collect()).unwrap_or_default()
    }
}

fn machine_keys(a: &Args) -> R<MachineStreamKeys> {
    let secret = Zeroizing::new(match a.one("key-file") {
        Some(f) => std::fs::read_to_string(f).map_err(|e| CliError::Failed(format!("read key file {f}: {e}")))?,
        None => std::env::var("PEAQOS_PRIVATE_KEY")
            .map_err(|_| CliError::Usage("machine key: set PEAQOS_PRIVATE_KEY or pass --key-file".into()))?,
    });
    Ok(MachineStreamKeys::from_secret_hex(secret.trim())?)
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn is_topic_dir(d: &Path) -> bool {
    d.join(store::HEAD_FILE).exists() || d.join("0.json").exists() || d.join(store::OPEN_FILE).exists()
}

/// `--data-dir D` is the node's `data_dir`: its chains are in `D/stream/<topic dir>`. The older
/// form, `D` = `<data_dir>/stream`, still works: it is taken when `D/stream` does not exist and
/// `D` holds the topic's directory. A new chain (`append`) goes to `D/stream`.
fn stream_root(a: &Args, topic: &str) -> R<PathBuf> {
    let d = PathBuf::from(a.req("data-dir")?);
    let nested = peaqos_base::layout::stream_dir(&d);
    if !nested.is_dir() && store::topic_dir(&d, topic)?.is_dir() {
        return Ok(d);
    }
    Ok(nested)
}

/// [`stream_root`] for a chain that must exist: a missing one is named with where it was looked for.
fn existing_stream_root(a: &Args, topic: &str) -> R<PathBuf> {
    let root = stream_root(a, topic)?;
    let dir = store::topic_dir(&root, topic)?;
    if dir.is_dir() {
        return Ok(root);
    }
    Err(CliError::Failed(format!(
        "no chunk chain of {topic}: {} does not exist (--data-dir is the node's data_dir; its chains are in <data_dir>/stream)",
        dir.display()
    )))
}

/// The chains `verify <dir>` checks: `dir` itself when it is a topic directory, else every topic
/// directory in `dir/stream` (the node's `data_dir`) or in `dir` (`<data_dir>/stream`).
fn chain_dirs(dir: &Path) -> R<Vec<PathBuf>> {
    if is_topic_dir(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let nested = peaqos_base::layout::stream_dir(dir);
    let root = if nested.is_dir() { nested } else { dir.to_path_buf() };
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| CliError::Failed(format!("list {}: {e}", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && is_topic_dir(p))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(CliError::Failed(format!(
            "{}: no chunk chain found (give the node's data_dir, <data_dir>/stream or a topic directory)",
            root.display()
        )));
    }
    Ok(v)
}

fn cmd_verify(a: &Args) -> R<()> {
    let dir = PathBuf::from(a.pos.first().ok_or_else(|| CliError::Usage("verify <dir>".into()))?);
    let dirs = chain_dirs(&dir)?;
    let mut out = Vec::new();
    for d in dirs {
        let r = verify_dir(&d, a.one("signer-pk"))?;
        out.push(serde_json::json!({"dir": d, "valid": true, "chunks": r.chunks, "lastChunkId": r.last_chunk_id, "signerPublicKeyHex": r.signer_public_key_hex}));
    }
    print_json(&serde_json::Value::Array(out));
    Ok(())
}

fn cmd_decrypt(a: &Args) -> R<()> {
    let dir = PathBuf::from(a.pos.first().ok_or_else(|| CliError::Usage("decrypt <topic_dir>".into()))?);
    let skf = a.req("secret-key-file")?;
    let sk_txt =
        Zeroizing::new(std::fs::read_to_string(skf).map_err(|e| CliError::Failed(format!("read {skf}: {e}")))?);
    let sk = Zeroizing::new(crypto::parse_hex_n::<32>(sk_txt.trim(), "secret key file")?);
    let grants = a.all("grant");
    if grants.is_empty() {
        return Err(CliError::Usage("missing --grant".into()));
    }
    let mut entries = Vec::new();
    for g in grants {
        entries.extend(load_grant_file(Path::new(g))?.entries);
    }
    let pts = decrypt_with_grants(&dir, &entries, &sk)?;
    match a.one("out") {
        Some(o) => {
            std::fs::create_dir_all(o).map_err(|e| CliError::Failed(format!("create {o}: {e}")))?;
            for (i, p) in &pts {
                let f = Path::new(o).join(format!("{i}.jsonl"));
                std::fs::write(&f, p.as_slice())
                    .map_err(|e| CliError::Failed(format!("write {}: {e}", f.display())))?;
            }
            eprintln!("decrypted {} chunks into {o}", pts.len());
        }
        None => {
            use std::io::Write;
            let mut so = std::io::stdout().lock();
            for (_, p) in &pts {
                so.write_all(p).map_err(|e| CliError::Failed(format!("stdout: {e}")))?;
            }
        }
    }
    Ok(())
}

fn read_secret_key(path: &str) -> R<Zeroizing<[u8; 32]>> {
    let txt = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CliError::Failed(format!("read {path}: {e}")))?);
    Ok(Zeroizing::new(crypto::parse_hex_n::<32>(txt.trim(), "secret key file")?))
}

fn cmd_export(a: &Args) -> R<()> {
    use peaqos_stream::export::{export_mcap, CiphertextSource, ExportOptions, NoProgress};
    if a.pos.is_empty() {
        return Err(CliError::Usage("export <dir>...: give at least one chain directory".into()));
    }
    let mut dirs = Vec::new();
    for d in &a.pos {
        dirs.extend(chain_dirs(Path::new(d))?);
    }
    let sk = read_secret_key(a.req("secret-key-file")?)?;
    let mut entries = Vec::new();
    for g in a.all("grant") {
        entries.extend(load_grant_file(Path::new(g))?.entries);
    }
    let source = match a.one("storage") {
        Some(f) => CiphertextSource::Storage(store::load_json(Path::new(f))?),
        None => CiphertextSource::Local,
    };
    let dataset: Option<DatasetManifest> = a.one("dataset").map(|d| store::load_json(Path::new(d))).transpose()?;
    let mut ros_types = std::collections::BTreeMap::new();
    for t in a.all("ros-type") {
        let (topic, ty) =
            t.split_once('=').ok_or_else(|| CliError::Usage(format!("--ros-type {t:?}: expected TOPIC=TYPE")))?;
        ros_types.insert(topic.to_string(), ty.to_string());
    }
    let o = ExportOptions {
        topic_dirs: dirs,
        secret_key: &sk,
        grants: &entries,
        source,
        dataset: dataset.as_ref(),
        signer_public_key_hex: a.one("signer-pk"),
        ros_types,
        allow_unverified: a.flag("allow-unverified"),
        compress: !a.flag("no-compression"),
    };
    let out = PathBuf::from(a.req("out")?);
    let r = export_mcap(&o, &out, &mut NoProgress).map_err(|e| CliError::Failed(e.to_string()))?;
    print_json(&serde_json::to_value(&r).map_err(|e| CliError::Failed(e.to_string()))?);
    Ok(())
}

fn cmd_grant(a: &Args) -> R<()> {
    let keys = machine_keys(a)?;
    let topic = a.req("topic")?;
    let data = existing_stream_root(a, topic)?;
    let buyer = crypto::parse_x25519_public(a.req("buyer-pk")?, "--buyer-pk")?;
    let range = GrantRange::parse(a.req("range")?)?;
    let max = match a.one("max-file-size") {
        Some(s) => s.parse().map_err(|_| CliError::Usage("--max-file-size must be a number".into()))?,
        None => peaqos_stream::envelope::DEFAULT_BUYER_ACCESS_FILE_SIZE,
    };
    let entries = grant(&data, topic, &range, &keys, &buyer, a.one("buyer-id").unwrap_or(DEFAULT_BUYER_RECIPIENT_ID))?;
    let files = build_buyer_access_files(entries, &hex::encode(buyer), max)?;
    let paths = write_buyer_access_files(Path::new(a.one("out").unwrap_or(".")), &files)?;
    print_json(&serde_json::json!({"files": paths, "entries": files.iter().map(|f| f.entries.len()).sum::<usize>()}));
    Ok(())
}

fn cmd_dataset(a: &Args) -> R<()> {
    let keys = machine_keys(a)?;
    let topic = a.req("topic")?;
    let data = existing_stream_root(a, topic)?;
    let (first, last) = match GrantRange::parse(a.req("range")?)? {
        GrantRange::Indices { first, last } => (first, last),
        GrantRange::TimeMs { .. } => return Err(CliError::Usage("dataset --range takes chunk indices A..B".into())),
    };
    let did = a.one("did").map(str::to_string).unwrap_or_else(|| keys.default_did());
    let now = store::unix_ms(std::time::SystemTime::now());
    let signer = |m: &[u8]| keys.eip191_sign(m);
    let m = build_dataset(&data, topic, first, last, &did, now, &signer)?;
    let p = match a.one("out") {
        Some(o) => {
            store::write_atomic(Path::new(o), &store::to_json_bytes(&m, "dataset")?).map_err(StreamError::from)?;
            PathBuf::from(o)
        }
        None => write_dataset(&data, &m)?,
    };
    print_json(&serde_json::json!({"dataset": p, "merkleRoot": m.merkle_root, "chunks": m.chunk_ids.len()}));
    Ok(())
}

fn cmd_prove(a: &Args) -> R<()> {
    let m: DatasetManifest = store::load_json(Path::new(a.req("dataset")?))?;
    verify_dataset(&m)?;
    let p = m.prove(a.req("chunk")?)?;
    let v = serde_json::to_value(&p).map_err(|e| CliError::Failed(e.to_string()))?;
    match a.one("out") {
        Some(o) => store::write_atomic(Path::new(o), &store::to_json_bytes(&v, "proof")?).map_err(StreamError::from)?,
        None => print_json(&v),
    }
    Ok(())
}

fn cmd_verify_proof(a: &Args) -> R<()> {
    let p: InclusionProof = store::load_json(Path::new(a.req("proof")?))?;
    let mut signer = None;
    let root = match a.one("dataset") {
        Some(d) => {
            let m: DatasetManifest = store::load_json(Path::new(d))?;
            signer = Some(verify_dataset(&m)?);
            Some(m.merkle_root)
        }
        None => None,
    };
    verify_proof(&p, root.as_deref())?;
    print_json(
        &serde_json::json!({"valid": true, "chunkId": p.chunk_id, "leafIndex": p.leaf_index, "merkleRoot": p.merkle_root, "datasetSigner": signer}),
    );
    Ok(())
}

fn cmd_keys(a: &Args) -> R<()> {
    let k = machine_keys(a)?;
    print_json(&serde_json::json!({
        "did": k.default_did(),
        "ed25519PublicKeyHex": hex::encode(k.ed25519_public),
        "x25519PublicKeyHex": hex::encode(k.x25519_public),
    }));
    Ok(())
}

fn cmd_append(a: &Args) -> R<()> {
    use std::io::BufRead;
    let keys = machine_keys(a)?;
    let topic = a.req("topic")?;
    let data = stream_root(a, topic)?;
    let did = a.one("did").map(str::to_string).unwrap_or_else(|| keys.default_did());
    let key_id = a.one("key-id").map(str::to_string).unwrap_or_else(|| format!("{did}#keys-1"));
    let pk = |n: &str| -> R<Option<[u8; 32]>> {
        a.one(n).map(|h| crypto::parse_x25519_public(h, &format!("--{n}"))).transpose().map_err(Into::into)
    };
    let num = |n: &str, d: usize| -> R<usize> {
        a.one(n).map_or(Ok(d), |v| v.parse().map_err(|_| CliError::Usage(format!("--{n} must be a number"))))
    };
    let defaults = ChunkPolicy::default();
    let policy = ChunkPolicy {
        max_bytes: num("max-bytes", defaults.max_bytes)?,
        max_messages: num("max-messages", defaults.max_messages)?,
        max_age: defaults.max_age,
    };
    let rec = Recipients { owner: pk("owner-pk")?, operator: pk("operator-pk")? };
    let (mut w, rep) = ChunkWriter::open(&data, topic, policy, &keys, &did, &key_id, &rec)?;
    let mut sealed: Vec<u64> = rep.sealed.iter().map(|s| s.chunk.index).collect();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| CliError::Failed(format!("stdin: {e}")))?;
        if line.is_empty() {
            continue;
        }
        if let Some(s) = w.append(line.as_bytes())? {
            sealed.push(s.chunk.index);
        }
    }
    if let Some(s) = w.close_now()? {
        sealed.push(s.chunk.index);
    }
    print_json(
        &serde_json::json!({"dir": w.dir(), "sealed": sealed, "nextIndex": w.next_index(), "recovery": format!("{:?}", rep.actions)}),
    );
    Ok(())
}

fn cmd_upload(a: &Args) -> R<()> {
    let topic = a.req("topic")?;
    let dir = store::topic_dir(&existing_stream_root(a, topic)?, topic)?;
    let cfg: DestinationConfig = store::load_json(Path::new(a.req("destination")?))?;
    let r = upload_pending(&dir, destination(&cfg).as_ref(), usize::MAX)?;
    print_json(&serde_json::json!({"stored": r.stored, "pending": r.pending}));
    match r.failed {
        Some((i, e)) => Err(CliError::Failed(format!("chunk index {i} not stored (stays queued): {e}"))),
        None => Ok(()),
    }
}

const USAGE: &str =
    "usage: peaqos-stream <verify|decrypt|export|grant|dataset|prove|verify-proof|keys|append|upload> … (see --help)";

fn run(argv: &[String]) -> R<()> {
    let (cmd, rest) = argv.split_first().ok_or_else(|| CliError::Usage(USAGE.into()))?;
    let f = |flags: &[&str]| Args::parse(rest, flags);
    match cmd.as_str() {
        "verify" => cmd_verify(&f(&["signer-pk"])?),
        "decrypt" => cmd_decrypt(&f(&["grant", "secret-key-file", "out"])?),
        "export" => cmd_export(&f(&[
            "secret-key-file",
            "grant",
            "storage",
            "dataset",
            "signer-pk",
            "ros-type",
            "allow-unverified",
            "no-compression",
            "out",
        ])?),
        "grant" => {
            cmd_grant(&f(&["data-dir", "topic", "buyer-pk", "range", "buyer-id", "out", "max-file-size", "key-file"])?)
        }
        "dataset" => cmd_dataset(&f(&["data-dir", "topic", "range", "did", "key-file", "out"])?),
        "prove" => cmd_prove(&f(&["dataset", "chunk", "out"])?),
        "verify-proof" => cmd_verify_proof(&f(&["proof", "dataset"])?),
        "keys" => cmd_keys(&f(&["key-file"])?),
        "append" => cmd_append(&f(&[
            "data-dir",
            "topic",
            "did",
            "key-id",
            "owner-pk",
            "operator-pk",
            "max-messages",
            "max-bytes",
            "key-file",
        ])?),
        "upload" => cmd_upload(&f(&["data-dir", "topic", "destination"])?),
        "-h" | "--help" | "help" => {
            println!("{HELP}");
            Ok(())
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}; {USAGE}"))),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            eprintln!("peaqos-stream: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("peaqos-stream: FAILED: {m}");
            ExitCode::from(1)
        }
    }
}
