//! peaqos-key: the machine key at rest, on the robot.
//!
//! ```text
//! peaqos-key new     --keystore PATH [--passphrase-file F] [--kdf-light]
//! peaqos-key import  --keystore PATH [--passphrase-file F] [--key-file PLAINTEXT] [--kdf-light]
//! peaqos-key address --keystore PATH [--passphrase-file F] [--verify]
//! ```
//!
//! `new` creates a machine key on this machine straight into a V3 keystore (what `peaqos init`
//! and the SDK's `generate_keypair` do, without the key ever existing in plaintext) and prints
//! only its address and DID, for funding and activation. `import` encrypts an existing
//! plaintext key (from `--key-file` or `PEAQOS_PRIVATE_KEY`); delete the plaintext afterwards.
//! `address` prints the address a keystore holds (`--verify` decrypts it to prove it).
//! The passphrase comes from `--passphrase-file` (mode 0600), `PEAQOS_KEYSTORE_PASSWORD`, or
//! the terminal. Keystores are written with mode 0600 and never overwritten. Exit codes: 0 ok,
//! 1 failure, 2 usage.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use peaqos_core::keys::{self, MachineKey, KEYSTORE_PASSWORD_ENV, PRIVATE_KEY_ENV};
use peaqos_core::keystore::{self, Kdf};
use zeroize::Zeroizing;

const USAGE: &str = "usage:
  peaqos-key new     --keystore PATH [--passphrase-file F] [--kdf-light]
  peaqos-key import  --keystore PATH [--passphrase-file F] [--key-file PLAINTEXT] [--kdf-light]
  peaqos-key address --keystore PATH [--passphrase-file F] [--verify]

The passphrase comes from --passphrase-file (mode 0600), PEAQOS_KEYSTORE_PASSWORD, or the
terminal. --kdf-light uses scrypt N=2^14 (for small test machines) instead of geth's 2^18.";

struct Args {
    command: String,
    keystore: PathBuf,
    passphrase_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    light: bool,
    verify: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let command = argv.first().cloned().ok_or("no command")?;
    let (mut keystore, mut passphrase_file, mut key_file, mut light, mut verify) = (None, None, None, false, false);
    let mut it = argv[1..].iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--keystore" => keystore = Some(PathBuf::from(value("--keystore")?)),
            "--passphrase-file" => passphrase_file = Some(PathBuf::from(value("--passphrase-file")?)),
            "--key-file" => key_file = Some(PathBuf::from(value("--key-file")?)),
            "--kdf-light" => light = true,
            "--verify" => verify = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let keystore = keystore.ok_or("--keystore is required")?;
    Ok(Args { command, keystore, passphrase_file, key_file, light, verify })
}

/// The passphrase: file, environment, or the terminal (asked twice when creating).
fn passphrase(a: &Args, creating: bool) -> Result<Zeroizing<Vec<u8>>, String> {
    let asked = keys::keystore_passphrase(&a.keystore, a.passphrase_file.as_deref()).is_err();
    let first = keys::keystore_passphrase_or_ask(&a.keystore, a.passphrase_file.as_deref(), "keystore passphrase: ")
        .map_err(|e| match e {
            keys::KeyError::NoPassphrase { .. } => {
                format!("no passphrase: set {KEYSTORE_PASSWORD_ENV}, pass --passphrase-file, or run on a terminal")
            }
            e => e.to_string(),
        })?;
    if creating && asked {
        let again = rpassword::prompt_password("again: ").map_err(|e| e.to_string())?;
        if again.as_bytes() != first.as_slice() {
            return Err("the passphrases differ".into());
        }
    }
    Ok(first)
}

fn write_new(path: &Path, json: &str) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{}: exists; not overwritten", path.display()));
    }
    peaqos_base::fsio::write_atomic(path, json.as_bytes()).map_err(|e| e.to_string())
}

fn run(a: &Args) -> Result<(), String> {
    let kdf = if a.light { Kdf::Scrypt { log_n: 14 } } else { Kdf::default() };
    let secret: Zeroizing<[u8; 32]> = match a.command.as_str() {
        "new" => loop {
            let mut s = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(&mut s[..]).map_err(|e| format!("random source: {e}"))?;
            if MachineKey::from_bytes(&s).is_ok() {
                break s;
            }
        },
        "import" => {
            let key = MachineKey::load(a.key_file.as_deref()).map_err(|e| match e {
                keys::KeyError::Missing => format!("no key to import: set {PRIVATE_KEY_ENV} or pass --key-file"),
                e => e.to_string(),
            })?;
            key.secret_bytes()
        }
        "address" => {
            let json = std::fs::read(&a.keystore).map_err(|e| format!("{}: {e}", a.keystore.display()))?;
            if a.verify {
                let key = MachineKey::from_keystore(&a.keystore, &passphrase(a, false)?).map_err(|e| e.to_string())?;
                println!("address {}\ndid {} (verified)", key.address(), key.did());
            } else {
                let addr = keystore::stated_address(&json)
                    .map_err(|e| e.to_string())?
                    .ok_or("the keystore states no address")?;
                println!("address {addr}\ndid did:peaq:{addr} (as the file states; --verify decrypts it)");
            }
            return Ok(());
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    let pass = passphrase(a, true)?;
    let json = keystore::encrypt(&secret, &pass, kdf).map_err(|e| e.to_string())?;
    write_new(&a.keystore, &json)?;
    let key = MachineKey::from_bytes(&secret).map_err(|e| e.to_string())?;
    println!("keystore {}\naddress {}\ndid {}", a.keystore.display(), key.address(), key.did());
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return if argv.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("peaqos-key: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peaqos-key: {e}");
            ExitCode::FAILURE
        }
    }
}
