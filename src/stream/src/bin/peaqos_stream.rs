//! `peaqos-stream`: offline tool for peaqOS stream chunk directories (verify, decrypt, export to
//! MCAP, grant, dataset, prove, verify-proof, keys, append, upload). The command line is `clap`
//! (derive): `peaqos-stream --help`, `peaqos-stream <command> --help`, `--version`, shell
//! completions with `peaqos-stream completions <shell>`. Exit codes: 0 success, 1 a check or
//! operation failed (the message names the chunk and the check), 2 usage error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use peaqos_stream::dataset::{
    build_dataset, verify_dataset, verify_proof, write_dataset, DatasetManifest, InclusionProof,
};
use peaqos_stream::export::{export_mcap, CiphertextSource, ExportOptions};
use peaqos_stream::grant::{
    build_buyer_access_files, decrypt_with_grants_progress, grant, load_grant_file, write_buyer_access_files,
    GrantRange, DEFAULT_BUYER_RECIPIENT_ID,
};
use peaqos_stream::keys::MachineStreamKeys;
use peaqos_stream::storage::{destination, upload_pending, DestinationConfig};
use peaqos_stream::verify::verify_dir;
use peaqos_stream::writer::{ChunkPolicy, ChunkWriter, Recipients};
use peaqos_stream::{crypto, store, StreamError};
use zeroize::Zeroizing;

#[path = "peaqos_stream/ui.rs"]
mod ui;

/// What `peaqos-stream --help` shows after the command list: every command's form.
const OVERVIEW: &str = "\
Forms:
  peaqos-stream verify <dir> [--signer-pk HEX]
      <dir> is the node's data_dir, a folder of topic directories (<data_dir>/stream),
      or one topic directory.
  peaqos-stream decrypt --grant F [--grant F...] --secret-key-file F <topic_dir> [--out DIR]
  peaqos-stream export --secret-key-file F [--grant F...] [--storage F.json] [--dataset F]
                       [--signer-pk HEX] [--ros-type TOPIC=TYPE...] [--allow-unverified]
                       [--ros2msg [--msg-path DIR...]] --out F.mcap <dir>...
  peaqos-stream grant --data-dir D --topic T --buyer-pk HEX --range A..B|t:MS..MS
                      [--buyer-id ID] [--out DIR] [--max-file-size BYTES] [--key-file F]
  peaqos-stream dataset --data-dir D --topic T --range A..B [--did DID] [--key-file F] [--out F]
  peaqos-stream prove --dataset F --chunk ID [--out F]
  peaqos-stream verify-proof --proof F [--dataset F]
  peaqos-stream keys [--key-file F]
  peaqos-stream append --data-dir D --topic T [--did DID] [--key-id ID] [--owner-pk HEX]
                       [--operator-pk HEX] [--max-messages N] [--max-bytes N] [--key-file F]
  peaqos-stream upload --data-dir D --topic T --destination F.json
  peaqos-stream log --data-dir D --topic T [--from N] [--key-file F]
  peaqos-stream completions bash|zsh|fish|elvish|powershell

--data-dir D is the node's data_dir (the node's parameter of that name): the chains are in
D/stream/<topic dir>. D = <data_dir>/stream itself is accepted too.
The machine key (grant, dataset, keys, append, log) is the secp256k1 secret in hex, from --key-file
or the PEAQOS_PRIVATE_KEY environment variable. Secret key files hold hex (optional 0x).
Long work (verify, decrypt, export, dataset) shows progress on stderr: a bar on a terminal,
plain lines otherwise; --quiet turns it off.
Exit codes: 0 success, 1 a check or operation failed (the message names the chunk and the
check), 2 usage error.";

#[derive(Parser)]
#[command(
    name = "peaqos-stream",
    version,
    about = "Offline tool for the peaqOS node's encrypted chunk streams",
    after_help = OVERVIEW,
    propagate_version = true
)]
struct Cli {
    /// No progress output (errors still go to stderr).
    #[arg(long, global = true)]
    quiet: bool,
    /// Print the summary as JSON on stdout (export and decrypt --out; the other commands always do).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Verify every sealed chunk of one or more chains (links, hashes, signatures).
    Verify(VerifyArgs),
    /// Decrypt granted chunks of a topic directory (JSON Lines of signed packages).
    Decrypt(DecryptArgs),
    /// Verify everything, then write one MCAP file (one JSON channel per topic) for Foxglove.
    Export(ExportArgs),
    /// Grant a buyer's X25519 key access to a range of chunks (buyer access files).
    Grant(GrantArgs),
    /// Seal a signed dataset manifest (Merkle root over chunk ids) of a range of chunks.
    Dataset(DatasetArgs),
    /// Write the inclusion proof of one chunk of a dataset.
    Prove(ProveArgs),
    /// Check an inclusion proof (and the dataset manifest's signature, if given).
    VerifyProof(VerifyProofArgs),
    /// Print the machine's stream public keys (Ed25519, X25519) and DID.
    Keys(KeyArgs),
    /// Read signed package lines from stdin into a topic's chain; seals the rest at EOF.
    Append(AppendArgs),
    /// Upload a topic's pending sealed chunks to a destination.
    Upload(UploadArgs),
    /// Print a topic's package log as JSON Lines of signed packages: a streamed package the log
    /// holds as a reference (written once, in its chunk) is read back from the chain.
    Log(LogArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The machine's secp256k1 key.
#[derive(Args)]
struct KeyArgs {
    /// File holding the machine's secp256k1 secret in hex (default: the PEAQOS_PRIVATE_KEY environment variable).
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
}

/// A topic's chain in the node's data_dir.
#[derive(Args)]
struct ChainArgs {
    /// The node's data_dir (its chains are in <data_dir>/stream; <data_dir>/stream itself works too).
    #[arg(long, value_name = "D")]
    data_dir: PathBuf,
    /// The ROS topic (e.g. /battery_state).
    #[arg(long, value_name = "T")]
    topic: String,
}

#[derive(Args)]
struct VerifyArgs {
    /// The node's data_dir, <data_dir>/stream, or one topic directory.
    dir: PathBuf,
    /// Expected Ed25519 chunk signing key of the machine (hex).
    #[arg(long, value_name = "HEX")]
    signer_pk: Option<String>,
}

#[derive(Args)]
struct DecryptArgs {
    /// The topic directory (<data_dir>/stream/<topic dir>).
    topic_dir: PathBuf,
    /// Buyer access file (repeatable).
    #[arg(long, value_name = "F", required = true)]
    grant: Vec<PathBuf>,
    /// File holding the buyer's X25519 secret key in hex.
    #[arg(long, value_name = "F")]
    secret_key_file: PathBuf,
    /// Write <index>.jsonl per chunk into this directory (default: all lines to stdout).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// Chains to export: the node's data_dir, <data_dir>/stream or topic directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// File holding an X25519 secret key in hex: a buyer's (with --grant) or a key recipient's (owner, operator, machine).
    #[arg(long, value_name = "F")]
    secret_key_file: PathBuf,
    /// Buyer access file (repeatable): export exactly the granted chunks.
    #[arg(long, value_name = "F")]
    grant: Vec<PathBuf>,
    /// Read the ciphertexts through the envelopes' storage references with this destination (a DestinationConfig JSON file: local, s3, walrus) instead of <n>.bin.
    #[arg(long, value_name = "F.json")]
    storage: Option<PathBuf>,
    /// A sealed dataset manifest: export exactly its chunks and record its Merkle root.
    #[arg(long, value_name = "F")]
    dataset: Option<PathBuf>,
    /// Expected Ed25519 chunk signing key of the machine (hex).
    #[arg(long, value_name = "HEX")]
    signer_pk: Option<String>,
    /// The ROS type of a topic (repeatable), e.g. /camera/image_raw=sensor_msgs/msg/Image: the channel's schema name.
    #[arg(long, value_name = "TOPIC=TYPE", value_parser = parse_ros_type)]
    ros_type: Vec<(String, String)>,
    /// Export what fails verification, marked (field __peaqos_unverified, metadata record peaqos.unverified).
    #[arg(long)]
    allow_unverified: bool,
    /// Write uncompressed MCAP chunks (default: zstd).
    #[arg(long)]
    no_compression: bool,
    /// Topics with a --ros-type get a ros2msg schema and CDR messages (Foxglove's image and 3D panels, ros2 bag) for every payload that holds all its fields; the others stay JSON on a second channel of the topic.
    #[arg(long)]
    ros2msg: bool,
    /// Where the .msg definitions are: share directories holding <pkg>/msg/<Name>.msg (repeatable; default: every AMENT_PREFIX_PATH entry's share).
    #[arg(long, value_name = "DIR", requires = "ros2msg")]
    msg_path: Vec<PathBuf>,
    /// The MCAP file to write (appears only when the export succeeded).
    #[arg(long, value_name = "F.mcap")]
    out: PathBuf,
}

fn parse_ros_type(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((t, ty)) if !t.is_empty() && !ty.is_empty() => Ok((t.to_string(), ty.to_string())),
        _ => Err(format!("{s:?}: expected TOPIC=TYPE, e.g. /imu=sensor_msgs/msg/Imu")),
    }
}

fn parse_range(s: &str) -> Result<GrantRange, String> {
    GrantRange::parse(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct GrantArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// The buyer's X25519 public key (hex).
    #[arg(long, value_name = "HEX")]
    buyer_pk: String,
    /// Chunk indices A..B (inclusive), one index A, or append times t:FROM_MS..TO_MS.
    #[arg(long, value_name = "A..B|t:MS..MS", value_parser = parse_range)]
    range: GrantRange,
    /// The buyer's recipient id.
    #[arg(long, value_name = "ID", default_value = DEFAULT_BUYER_RECIPIENT_ID)]
    buyer_id: String,
    /// Directory for the buyer access files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Largest buyer access file in bytes (the SDK's batching).
    #[arg(long, value_name = "BYTES", default_value_t = peaqos_stream::envelope::DEFAULT_BUYER_ACCESS_FILE_SIZE)]
    max_file_size: usize,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct DatasetArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Chunk indices A..B (inclusive).
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    range: GrantRange,
    /// Machine DID written into the manifest (default: the key's did:peaq).
    #[arg(long, value_name = "DID")]
    did: Option<String>,
    /// Manifest file (default: <topic dir>/datasets/<first>-<last>.json).
    #[arg(long, value_name = "F")]
    out: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ProveArgs {
    /// Dataset manifest.
    #[arg(long, value_name = "F")]
    dataset: PathBuf,
    /// Chunk id to prove.
    #[arg(long, value_name = "ID")]
    chunk: String,
    /// Proof file (default: stdout).
    #[arg(long, value_name = "F")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyProofArgs {
    /// Inclusion proof.
    #[arg(long, value_name = "F")]
    proof: PathBuf,
    /// Dataset manifest whose root and signature the proof must match.
    #[arg(long, value_name = "F")]
    dataset: Option<PathBuf>,
}

#[derive(Args)]
struct AppendArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Machine DID of the chunks (default: the key's did:peaq).
    #[arg(long, value_name = "DID")]
    did: Option<String>,
    /// Signing key id (default: <did>#keys-1).
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// Owner X25519 public key (hex): a key recipient of every chunk.
    #[arg(long, value_name = "HEX")]
    owner_pk: Option<String>,
    /// Operator X25519 public key (hex): a key recipient of every chunk.
    #[arg(long, value_name = "HEX")]
    operator_pk: Option<String>,
    /// Seal a chunk after this many messages.
    #[arg(long, value_name = "N")]
    max_messages: Option<usize>,
    /// Seal a chunk after this many plaintext bytes.
    #[arg(long, value_name = "N")]
    max_bytes: Option<usize>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct UploadArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// A DestinationConfig JSON file, e.g. {"kind":"local"}.
    #[arg(long, value_name = "F.json")]
    destination: PathBuf,
}

#[derive(Args)]
struct LogArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// First sequence number to print.
    #[arg(long, value_name = "N", default_value_t = 0)]
    from: u64,
    #[command(flatten)]
    key: KeyArgs,
}

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

fn machine_keys(k: &KeyArgs) -> R<MachineStreamKeys> {
    let secret = Zeroizing::new(match &k.key_file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| CliError::Failed(format!("read key file {}: {e}", f.display())))?
        }
        None => std::env::var("PEAQOS_PRIVATE_KEY")
            .map_err(|_| CliError::Usage("machine key: set PEAQOS_PRIVATE_KEY or pass --key-file".into()))?,
    });
    Ok(MachineStreamKeys::from_secret_hex(secret.trim())?)
}

fn read_secret_key(path: &Path) -> R<Zeroizing<[u8; 32]>> {
    let txt = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| CliError::Failed(format!("read {}: {e}", path.display())))?,
    );
    Ok(Zeroizing::new(crypto::parse_hex_n::<32>(txt.trim(), "secret key file")?))
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn is_topic_dir(d: &Path) -> bool {
    d.join(store::HEAD_FILE).exists()
        || d.join("0.json").exists()
        || d.join(store::OPEN_FILE).exists()
        || peaqos_stream::open_chunk::key_path(d, 0).exists()
}

/// `--data-dir D` is the node's `data_dir`: its chains are in `D/stream/<topic dir>`. The older
/// form, `D` = `<data_dir>/stream`, still works: it is taken when `D/stream` does not exist and
/// `D` holds the topic's directory. A new chain (`append`) goes to `D/stream`.
fn stream_root(c: &ChainArgs) -> R<PathBuf> {
    let d = &c.data_dir;
    let nested = peaqos_base::layout::stream_dir(d);
    if !nested.is_dir() && store::topic_dir(d, &c.topic)?.is_dir() {
        return Ok(d.clone());
    }
    Ok(nested)
}

/// [`stream_root`] for a chain that must exist: a missing one is named with where it was looked for.
fn existing_stream_root(c: &ChainArgs) -> R<PathBuf> {
    let root = stream_root(c)?;
    let dir = store::topic_dir(&root, &c.topic)?;
    if dir.is_dir() {
        return Ok(root);
    }
    Err(CliError::Failed(format!(
        "no chunk chain of {}: {} does not exist (--data-dir is the node's data_dir; its chains are in <data_dir>/stream)",
        c.topic,
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

fn cmd_verify(a: &VerifyArgs, g: &Cli) -> R<()> {
    let dirs = chain_dirs(&a.dir)?;
    let mut p = ui::Progress::new("verify", dirs.len() as u64, "chains", g.quiet);
    let mut out = Vec::new();
    for (i, d) in dirs.into_iter().enumerate() {
        let r = verify_dir(&d, a.signer_pk.as_deref())?;
        out.push(serde_json::json!({"dir": d, "valid": true, "chunks": r.chunks, "lastChunkId": r.last_chunk_id, "signerPublicKeyHex": r.signer_public_key_hex, "storedElsewhere": r.stored_elsewhere}));
        p.step(i as u64 + 1, 0);
    }
    p.finish();
    print_json(&serde_json::Value::Array(out));
    Ok(())
}

fn cmd_decrypt(a: &DecryptArgs, g: &Cli) -> R<()> {
    let sk = read_secret_key(&a.secret_key_file)?;
    let mut entries = Vec::new();
    for f in &a.grant {
        entries.extend(load_grant_file(f)?.entries);
    }
    let mut p = ui::Progress::new("decrypt", entries.len() as u64, "chunks", g.quiet);
    let pts = decrypt_with_grants_progress(&a.topic_dir, &entries, &sk, &mut |done, bytes| p.step(done, bytes))?;
    let bytes: u64 = pts.iter().map(|(_, p)| p.len() as u64).sum();
    p.finish();
    match &a.out {
        Some(o) => {
            std::fs::create_dir_all(o).map_err(|e| CliError::Failed(format!("create {}: {e}", o.display())))?;
            for (i, p) in &pts {
                let f = o.join(format!("{i}.jsonl"));
                std::fs::write(&f, p.as_slice())
                    .map_err(|e| CliError::Failed(format!("write {}: {e}", f.display())))?;
            }
            if g.json {
                print_json(&serde_json::json!({"out": o, "chunks": pts.len(), "plaintextBytes": bytes}));
            } else if !g.quiet {
                eprintln!("decrypted {} chunks into {}", pts.len(), o.display());
            }
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

fn cmd_export(a: &ExportArgs, g: &Cli) -> R<()> {
    let mut dirs = Vec::new();
    for d in &a.dirs {
        dirs.extend(chain_dirs(d)?);
    }
    let sk = read_secret_key(&a.secret_key_file)?;
    let mut entries = Vec::new();
    for f in &a.grant {
        entries.extend(load_grant_file(f)?.entries);
    }
    let source = match &a.storage {
        Some(f) => CiphertextSource::Storage(store::load_json::<DestinationConfig>(f)?),
        None => CiphertextSource::Local,
    };
    let dataset: Option<DatasetManifest> = a.dataset.as_deref().map(store::load_json).transpose()?;
    let o = ExportOptions {
        topic_dirs: dirs,
        secret_key: &sk,
        grants: &entries,
        source,
        dataset: dataset.as_ref(),
        signer_public_key_hex: a.signer_pk.as_deref(),
        ros_types: a.ros_type.iter().cloned().collect::<BTreeMap<_, _>>(),
        allow_unverified: a.allow_unverified,
        compress: !a.no_compression,
        ros2msg_share_dirs: a.ros2msg.then(|| {
            if a.msg_path.is_empty() {
                std::env::var("AMENT_PREFIX_PATH")
                    .unwrap_or_default()
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| Path::new(p).join("share"))
                    .collect()
            } else {
                a.msg_path.clone()
            }
        }),
    };
    let mut p = ui::Progress::new("export", 0, "chunks", g.quiet);
    let r = export_mcap(&o, &a.out, &mut p).map_err(|e| CliError::Failed(e.to_string()))?;
    p.finish();
    if g.json {
        print_json(&serde_json::to_value(&r).map_err(|e| CliError::Failed(e.to_string()))?);
    } else if !g.quiet {
        eprintln!(
            "exported {} messages of {} chunks ({} topics) into {} ({} bytes){}",
            r.messages,
            r.chunks,
            r.topics.len(),
            r.output.display(),
            r.output_bytes,
            if r.unverified.is_empty() {
                ", everything verified".to_string()
            } else {
                format!(", {} UNVERIFIED items listed in the file's peaqos.unverified record", r.unverified.len())
            }
        );
    }
    Ok(())
}

fn cmd_grant(a: &GrantArgs) -> R<()> {
    let keys = machine_keys(&a.key)?;
    let data = existing_stream_root(&a.chain)?;
    let buyer = crypto::parse_x25519_public(&a.buyer_pk, "--buyer-pk")?;
    let entries = grant(&data, &a.chain.topic, &a.range, &keys, &buyer, &a.buyer_id)?;
    let files = build_buyer_access_files(entries, &hex::encode(buyer), a.max_file_size)?;
    let paths = write_buyer_access_files(&a.out, &files)?;
    print_json(&serde_json::json!({"files": paths, "entries": files.iter().map(|f| f.entries.len()).sum::<usize>()}));
    Ok(())
}

fn cmd_dataset(a: &DatasetArgs, g: &Cli) -> R<()> {
    let keys = machine_keys(&a.key)?;
    let data = existing_stream_root(&a.chain)?;
    let (first, last) = match a.range {
        GrantRange::Indices { first, last } => (first, last),
        GrantRange::TimeMs { .. } => return Err(CliError::Usage("dataset --range takes chunk indices A..B".into())),
    };
    let did = a.did.clone().unwrap_or_else(|| keys.default_did());
    let now = store::unix_ms(std::time::SystemTime::now());
    let signer = |m: &[u8]| keys.eip191_sign(m);
    let mut p = ui::Progress::new("dataset", last - first + 1, "chunks", g.quiet);
    let m = build_dataset(&data, &a.chain.topic, first, last, &did, now, &signer)?;
    p.step(m.chunk_ids.len() as u64, 0);
    p.finish();
    let path = match &a.out {
        Some(o) => {
            store::write_atomic(o, &store::to_json_bytes(&m, "dataset")?).map_err(StreamError::from)?;
            o.clone()
        }
        None => write_dataset(&data, &m)?,
    };
    print_json(&serde_json::json!({"dataset": path, "merkleRoot": m.merkle_root, "chunks": m.chunk_ids.len()}));
    Ok(())
}

fn cmd_prove(a: &ProveArgs) -> R<()> {
    let m: DatasetManifest = store::load_json(&a.dataset)?;
    verify_dataset(&m)?;
    let p = m.prove(&a.chunk)?;
    let v = serde_json::to_value(&p).map_err(|e| CliError::Failed(e.to_string()))?;
    match &a.out {
        Some(o) => store::write_atomic(o, &store::to_json_bytes(&v, "proof")?).map_err(StreamError::from)?,
        None => print_json(&v),
    }
    Ok(())
}

fn cmd_verify_proof(a: &VerifyProofArgs) -> R<()> {
    let p: InclusionProof = store::load_json(&a.proof)?;
    let mut signer = None;
    let root = match &a.dataset {
        Some(d) => {
            let m: DatasetManifest = store::load_json(d)?;
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

fn cmd_keys(a: &KeyArgs) -> R<()> {
    let k = machine_keys(a)?;
    print_json(&serde_json::json!({
        "did": k.default_did(),
        "ed25519PublicKeyHex": hex::encode(k.ed25519_public),
        "x25519PublicKeyHex": hex::encode(k.x25519_public),
    }));
    Ok(())
}

fn cmd_append(a: &AppendArgs) -> R<()> {
    use std::io::BufRead;
    let keys = machine_keys(&a.key)?;
    let topic = &a.chain.topic;
    let data = stream_root(&a.chain)?;
    let did = a.did.clone().unwrap_or_else(|| keys.default_did());
    let key_id = a.key_id.clone().unwrap_or_else(|| format!("{did}#keys-1"));
    let pk = |v: &Option<String>, n: &str| -> R<Option<[u8; 32]>> {
        v.as_deref().map(|h| crypto::parse_x25519_public(h, n)).transpose().map_err(Into::into)
    };
    let defaults = ChunkPolicy::default();
    let policy = ChunkPolicy {
        max_bytes: a.max_bytes.unwrap_or(defaults.max_bytes),
        max_messages: a.max_messages.unwrap_or(defaults.max_messages),
        max_age: defaults.max_age,
    };
    let rec = Recipients { owner: pk(&a.owner_pk, "--owner-pk")?, operator: pk(&a.operator_pk, "--operator-pk")? };
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

fn cmd_upload(a: &UploadArgs) -> R<()> {
    let dir = store::topic_dir(&existing_stream_root(&a.chain)?, &a.chain.topic)?;
    let cfg: DestinationConfig = store::load_json(&a.destination)?;
    let r = upload_pending(&dir, destination(&cfg).as_ref(), usize::MAX)?;
    print_json(&serde_json::json!({"stored": r.stored, "pending": r.pending}));
    match r.failed {
        Some((i, e)) => Err(CliError::Failed(format!("chunk index {i} not stored (stays queued): {e}"))),
        None => Ok(()),
    }
}

fn cmd_log(a: &LogArgs) -> R<()> {
    use std::io::Write as _;
    let keys = std::sync::Arc::new(machine_keys(&a.key)?);
    let stream = peaqos_base::layout::stream_dir(&a.chain.data_dir);
    let resolver = peaqos_stream::payload_store::ChainResolver::new(&stream, keys);
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(e.to_string());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for item in
        peaqos_core::package_log::iter_topic_from(&a.chain.data_dir, &a.chain.topic, a.from).map_err(|e| failed(&e))?
    {
        let (seq, line) = item.map_err(|e| failed(&e))?;
        let line = peaqos_core::package_log::resolve_line(&a.chain.topic, seq, line, Some(&resolver))
            .map_err(|e| failed(&e))?;
        writeln!(out, "{line}").map_err(|e| failed(&e))?;
    }
    out.flush().map_err(|e| failed(&e))
}

fn run(cli: &Cli) -> R<()> {
    match &cli.cmd {
        Cmd::Verify(a) => cmd_verify(a, cli),
        Cmd::Decrypt(a) => cmd_decrypt(a, cli),
        Cmd::Export(a) => cmd_export(a, cli),
        Cmd::Grant(a) => cmd_grant(a),
        Cmd::Dataset(a) => cmd_dataset(a, cli),
        Cmd::Prove(a) => cmd_prove(a),
        Cmd::VerifyProof(a) => cmd_verify_proof(a),
        Cmd::Keys(a) => cmd_keys(a),
        Cmd::Append(a) => cmd_append(a),
        Cmd::Upload(a) => cmd_upload(a),
        Cmd::Log(a) => cmd_log(a),
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "peaqos-stream", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // clap prints help/version (exit 0) and usage errors (exit 2) itself.
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(m)) => {
            let _ = Cli::command().error(clap::error::ErrorKind::ValueValidation, m).print();
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("peaqos-stream: FAILED: {m}");
            ExitCode::from(1)
        }
    }
}
