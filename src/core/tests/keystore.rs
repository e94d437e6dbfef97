//! V3 keystores against an independent implementation (eth_account, installed with the SDK):
//! each side decrypts what the other wrote, with scrypt and PBKDF2; and the `peaqos-key` tool.
use std::path::Path;
use std::process::Command;

use peaqos_core::keys::MachineKey;
use peaqos_core::keystore::{self, Kdf};

const SK: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(peaqos_testkit::sdk_python()).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "eth_account failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn eth_account_and_ours_read_each_others_keystores() {
    let sk: [u8; 32] = hex::decode(SK).unwrap().try_into().unwrap();
    for kdf in ["scrypt", "pbkdf2"] {
        // eth_account writes, we read.
        let theirs = python(
            "import json,sys; from eth_account import Account; \
             print(json.dumps(Account.encrypt(sys.argv[1], 'pw ü', kdf=sys.argv[2], iterations=(1024 if sys.argv[2]=='scrypt' else 2000))))",
            &[SK, kdf],
        );
        assert_eq!(hex::encode(*keystore::decrypt(theirs.as_bytes(), "pw ü".as_bytes()).unwrap()), SK, "{kdf}");
        // We write, eth_account reads.
        let ours = keystore::encrypt(
            &sk,
            "pw ü".as_bytes(),
            if kdf == "scrypt" { Kdf::Scrypt { log_n: 10 } } else { Kdf::Pbkdf2 { c: 2000 } },
        )
        .unwrap();
        let back = python(
            "import sys; from eth_account import Account; print(Account.decrypt(sys.argv[1], 'pw ü').hex())",
            &[&ours],
        );
        assert_eq!(back.trim_start_matches("0x"), SK, "{kdf}");
    }
}

fn tool(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_peaqos-key"));
    c.args(args).current_dir(dir).env_remove("PEAQOS_PRIVATE_KEY").env_remove("PEAQOS_KEYSTORE_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn the_tool_creates_imports_and_reads_keystores_without_plaintext() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let pass = d.path().join("pass");
    std::fs::write(&pass, "correct horse\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pf = pass.to_str().unwrap();

    // new: only the address and DID are printed; the file is 0600 and decrypts.
    let (code, out, err) =
        tool(d.path(), &["new", "--keystore", "machine.json", "--passphrase-file", pf, "--kdf-light"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("address 0x") && out.contains("did did:peaq:0x"), "{out}");
    let ks = d.path().join("machine.json");
    assert_eq!(std::fs::metadata(&ks).unwrap().permissions().mode() & 0o777, 0o600);
    let key = MachineKey::from_keystore(&ks, b"correct horse").unwrap();
    assert!(out.contains(key.address()));
    assert!(!out.contains(&hex::encode(*key.secret_bytes())) && !err.contains(&hex::encode(*key.secret_bytes())));
    // Never overwritten.
    let (code, _, err) =
        tool(d.path(), &["new", "--keystore", "machine.json", "--passphrase-file", pf, "--kdf-light"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not overwritten"), "{err}");

    // import from the environment; the plaintext is nowhere in the keystore.
    let (code, out, err) = tool(
        d.path(),
        &["import", "--keystore", "imported.json", "--kdf-light"],
        &[("PEAQOS_PRIVATE_KEY", SK), ("PEAQOS_KEYSTORE_PASSWORD", "pw")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), "{out}");
    assert!(!std::fs::read_to_string(d.path().join("imported.json")).unwrap().contains(SK));

    // address, stated and verified; a wrong passphrase is a clear failure.
    let (code, out, _) = tool(d.path(), &["address", "--keystore", "imported.json"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"));
    let (code, out, _) =
        tool(d.path(), &["address", "--keystore", "imported.json", "--verify"], &[("PEAQOS_KEYSTORE_PASSWORD", "pw")]);
    assert_eq!(code, 0);
    assert!(out.contains("(verified)"));
    let (code, _, err) = tool(
        d.path(),
        &["address", "--keystore", "imported.json", "--verify"],
        &[("PEAQOS_KEYSTORE_PASSWORD", "nope")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("wrong passphrase"), "{err}");
    // Usage errors exit 2.
    assert_eq!(tool(d.path(), &["new"], &[]).0, 2);
    assert_eq!(tool(d.path(), &["bogus", "--keystore", "x"], &[]).0, 1);
}
