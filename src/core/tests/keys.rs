//! Machine and field key loading: env and file, mode checks, malformed input, and that no
//! error or Debug string ever contains the secret.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use peaqos_core::keys::{FieldKey, KeyError, MachineKey, PRIVATE_KEY_ENV};

const SK: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ADDR: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

fn write_mode(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn assert_no_secret(s: &str) {
    assert!(!s.to_lowercase().contains(&SK[..16]), "secret leaked: {s}");
    assert!(!s.to_lowercase().contains(&SK[40..]), "secret leaked: {s}");
}

#[test]
fn env_and_file_sources() {
    let dir = tempfile::tempdir().unwrap();
    let k = MachineKey::load_from(Some(&format!("  0x{SK}\n")), None).unwrap();
    assert_eq!(k.address(), ADDR);
    assert_no_secret(&format!("{k:?}"));

    for (i, text) in [SK.to_owned(), format!("0x{SK}"), format!("\n 0X{} \n", SK.to_uppercase())].iter().enumerate() {
        for mode in [0o600, 0o400] {
            let p = write_mode(dir.path(), &format!("k{i}_{mode:o}"), text, mode);
            let k = MachineKey::load_from(None, Some(&p)).unwrap();
            assert_eq!(k.address(), ADDR);
        }
    }
    // env wins over the file
    let p = write_mode(dir.path(), "other", &"11".repeat(32), 0o600);
    assert_eq!(MachineKey::load_from(Some(SK), Some(&p)).unwrap().address(), ADDR);
    assert!(matches!(MachineKey::load_from(None, None), Err(KeyError::Missing)));
    // The real environment variable is read by `load` (only checked when the test env has none).
    if std::env::var(PRIVATE_KEY_ENV).is_err() {
        assert!(MachineKey::load(None).is_err());
    }
}

#[test]
fn open_modes_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o666, 0o700, 0o602] {
        let p = write_mode(dir.path(), &format!("k{mode:o}"), SK, mode);
        let e = MachineKey::load_from(None, Some(&p)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, KeyError::BadMode { .. }), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert_no_secret(&msg);
        assert_no_secret(&format!("{e:?}"));
    }
    let e = MachineKey::load_from(None, Some(dir.path())).unwrap_err();
    assert!(matches!(e, KeyError::NotAFile { .. }), "{e}");
    let e = MachineKey::load_from(None, Some(&dir.path().join("missing"))).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn malformed_keys_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        SK[..63].to_owned(),
        format!("{SK}00"),
        format!("{}zz{}", &SK[..30], &SK[32..]),
        format!("0x0x{SK}"),
        format!("{} {}", &SK[..32], &SK[32..]),
        "".to_owned(),
    ];
    for (i, text) in bad.iter().enumerate() {
        let e = MachineKey::load_from(Some(text), None).unwrap_err();
        assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains(PRIVATE_KEY_ENV), "{e}");
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
        let p = write_mode(dir.path(), &format!("bad{i}"), text, 0o600);
        let e = MachineKey::load_from(None, Some(&p)).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert_no_secret(&e.to_string());
        assert_no_secret(&format!("{e:?}"));
    }
    // zero and ≥ group order are not valid scalars
    for text in ["00".repeat(32), "ff".repeat(32)] {
        let e = MachineKey::load_from(Some(&text), None).unwrap_err();
        assert!(matches!(e, KeyError::InvalidScalar { .. }), "{e}");
    }
}

#[test]
fn field_key_created_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = FieldKey::load_from(None, dir.path()).unwrap();
    let path = FieldKey::default_path(dir.path());
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let k2 = FieldKey::load_from(None, dir.path()).unwrap();
    assert_eq!(k1.bytes(), k2.bytes());
    assert_eq!(fs::read_to_string(&path).unwrap().trim(), hex::encode(k1.bytes()));
    assert_eq!(format!("{k1:?}"), "FieldKey([REDACTED])");

    // env wins; a too-open file is refused
    let k3 = FieldKey::load_from(Some(&"22".repeat(32)), dir.path()).unwrap();
    assert_eq!(k3.bytes(), &[0x22; 32]);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let e = FieldKey::load_from(None, dir.path()).unwrap_err();
    assert!(matches!(e, KeyError::BadMode { mode: 0o644, .. }), "{e}");
    let e = FieldKey::load_from(Some("12"), dir.path()).unwrap_err();
    assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
}
