//! ROS 2 message definitions (`.msg` files) and CDR encoding of package payloads, for the MCAP
//! export's `ros2msg` channels (Foxglove's image/3D panels, `ros2 bag`). ROS-free: the
//! definitions are read as text from share directories (`<prefix>/share/<pkg>/msg/<Name>.msg`,
//! e.g. every `AMENT_PREFIX_PATH` entry's `share`), nothing links to ROS.
//!
//! A payload is encoded only when it holds every field of its type with a value of that type
//! (ROS values as the node writes them: integers exactly, floats as numbers or `"NaN"`,
//! `"Infinity"`, `"-Infinity"`, `uint8[]`/`byte[]`/`char[]` as base64, nested messages as
//! objects): a field removed, encrypted (`__encrypted`) or anonymized (`__anonymized`) by the
//! rules makes [`MsgLibrary::encode`] return [`CdrError`] naming the field, and the caller keeps
//! the message as JSON. Encoding: XCDR1 little endian (`00 01 00 00` header), primitives aligned
//! to their size from the end of the header, strings as `u32` length (with the NUL) + bytes + NUL,
//! sequences as `u32` count + elements, fixed arrays without a count.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// Why a payload was not encoded (the caller keeps it as JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CdrError {
    /// The field path (`header.stamp.sec`) or the type.
    pub field: String,
    pub reason: String,
}

fn cerr(field: &str, reason: impl Into<String>) -> CdrError {
    CdrError { field: field.to_string(), reason: reason.into() }
}

#[derive(Debug, Clone, PartialEq)]
enum Base {
    Bool,
    Byte,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    Str,
    /// `pkg/Name`
    Msg(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Arity {
    One,
    Fixed(usize),
    /// Unbounded or bounded (`[<=N]`) sequence.
    Seq,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    base: Base,
    arity: Arity,
}

#[derive(Debug, Clone)]
struct Def {
    /// The `.msg` text as read.
    text: String,
    fields: Vec<Field>,
}

/// Message definitions found in share directories, loaded on demand.
#[derive(Debug, Default)]
pub struct MsgLibrary {
    share_dirs: Vec<PathBuf>,
    defs: BTreeMap<String, Def>,
}

/// `pkg/msg/Name` or `pkg/Name` → `pkg/Name`.
fn short(t: &str) -> String {
    match t.split('/').collect::<Vec<_>>()[..] {
        [p, "msg", n] => format!("{p}/{n}"),
        _ => t.to_string(),
    }
}

fn parse_base(t: &str, pkg: &str) -> Option<Base> {
    Some(match t {
        "bool" => Base::Bool,
        "byte" => Base::Byte,
        "char" | "uint8" => Base::U8,
        "int8" => Base::I8,
        "int16" => Base::I16,
        "uint16" => Base::U16,
        "int32" => Base::I32,
        "uint32" => Base::U32,
        "int64" => Base::I64,
        "uint64" => Base::U64,
        "float32" => Base::F32,
        "float64" => Base::F64,
        "string" => Base::Str,
        s if s.starts_with("string<=") => Base::Str,
        "wstring" => return None,
        s if s.starts_with("wstring") => return None,
        s if s.contains('/') => Base::Msg(short(s)),
        s if s.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => Base::Msg(format!("{pkg}/{s}")),
        _ => return None,
    })
}

fn parse_def(text: &str, pkg: &str, ty: &str) -> Result<Def, CdrError> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let mut parts = l.split_whitespace();
        let (Some(t), Some(name)) = (parts.next(), parts.next()) else {
            return Err(cerr(ty, format!("cannot read the line {l:?}")));
        };
        if name.contains('=') || l.split_whitespace().nth(1).is_some_and(|n| n.ends_with('=')) {
            continue; // a constant
        }
        let (bt, arity) = match t.split_once('[') {
            None => (t, Arity::One),
            Some((b, rest)) => {
                let inner = rest.trim_end_matches(']');
                if inner.is_empty() || inner.starts_with("<=") {
                    (b, Arity::Seq)
                } else {
                    let n = inner.parse().map_err(|_| cerr(ty, format!("array size in {t:?}")))?;
                    (b, Arity::Fixed(n))
                }
            }
        };
        let base =
            parse_base(bt, pkg).ok_or_else(|| cerr(&format!("{ty}.{name}"), format!("type {bt} is not supported")))?;
        fields.push(Field { name: name.to_string(), base, arity });
    }
    Ok(Def { text: text.to_string(), fields })
}

impl MsgLibrary {
    /// A library reading definitions from these share directories (first match wins).
    pub fn new(share_dirs: Vec<PathBuf>) -> MsgLibrary {
        MsgLibrary { share_dirs, defs: BTreeMap::new() }
    }

    fn load(&mut self, ty: &str) -> Result<Def, CdrError> {
        let ty = short(ty);
        if let Some(d) = self.defs.get(&ty) {
            return Ok(d.clone());
        }
        let (pkg, name) = ty.split_once('/').ok_or_else(|| cerr(&ty, "not a pkg/msg/Name type"))?;
        let file = self
            .share_dirs
            .iter()
            .map(|d| d.join(pkg).join("msg").join(format!("{name}.msg")))
            .find(|p| p.is_file())
            .ok_or_else(|| cerr(&ty, format!("no {pkg}/msg/{name}.msg in the message paths {:?}", self.share_dirs)))?;
        let text = std::fs::read_to_string(&file).map_err(|e| cerr(&ty, format!("read {}: {e}", file.display())))?;
        let def = parse_def(&text, pkg, &ty)?;
        self.defs.insert(ty, def.clone());
        Ok(def)
    }

    /// The `ros2msg` schema of `ty` (`pkg/msg/Name`): its definition, then every message type it
    /// uses, each after a line of 80 `=` and `MSG: pkg/Name` (the rosbag2 / Foxglove form).
    pub fn schema(&mut self, ty: &str) -> Result<String, CdrError> {
        let root = self.load(ty)?;
        let mut out = root.text.trim_end().to_string();
        out.push('\n');
        let mut seen: Vec<String> = vec![short(ty)];
        let mut todo: Vec<String> = Vec::new();
        let push_deps = |d: &Def, todo: &mut Vec<String>| {
            for f in &d.fields {
                if let Base::Msg(m) = &f.base {
                    todo.push(m.clone());
                }
            }
        };
        push_deps(&root, &mut todo);
        while let Some(t) = todo.first().cloned() {
            todo.remove(0);
            if seen.contains(&t) {
                continue;
            }
            seen.push(t.clone());
            let d = self.load(&t)?;
            out.push_str(&format!("{}\nMSG: {t}\n{}\n", "=".repeat(80), d.text.trim_end()));
            push_deps(&d, &mut todo);
        }
        Ok(out)
    }

    /// CDR of `payload` as a `ty`, or why not (a field missing, removed or of another type).
    pub fn encode(&mut self, ty: &str, payload: &Value) -> Result<Vec<u8>, CdrError> {
        let mut w = Cdr { buf: vec![0x00, 0x01, 0x00, 0x00] };
        self.encode_msg(&short(ty), payload, "", &mut w)?;
        Ok(w.buf)
    }

    fn encode_msg(&mut self, ty: &str, v: &Value, path: &str, w: &mut Cdr) -> Result<(), CdrError> {
        let def = self.load(ty)?;
        let obj = v.as_object().ok_or_else(|| cerr(path_or(path, ty), "not an object"))?;
        if obj.contains_key("__encrypted") || obj.contains_key("__anonymized") {
            return Err(cerr(path_or(path, ty), "encrypted or anonymized by the rules"));
        }
        if obj.len() != def.fields.len() {
            return Err(cerr(path_or(path, ty), format!("{} fields, {ty} has {}", obj.len(), def.fields.len())));
        }
        for f in &def.fields {
            let p = if path.is_empty() { f.name.clone() } else { format!("{path}.{}", f.name) };
            let fv = obj.get(&f.name).ok_or_else(|| cerr(&p, "missing (removed by the rules?)"))?;
            self.encode_field(f, fv, &p, w)?;
        }
        Ok(())
    }

    fn encode_field(&mut self, f: &Field, v: &Value, p: &str, w: &mut Cdr) -> Result<(), CdrError> {
        let bytes_like = matches!(f.base, Base::U8 | Base::Byte);
        match (&f.arity, bytes_like) {
            (Arity::One, _) => self.encode_one(&f.base, v, p, w),
            (arity, true) if v.is_string() => {
                let s = v.as_str().unwrap_or_default();
                let b = peaqos_core::base64_decode(s).ok_or_else(|| cerr(p, "not base64"))?;
                match arity {
                    Arity::Fixed(n) if *n != b.len() => Err(cerr(p, format!("{} bytes, the type has {n}", b.len()))),
                    Arity::Fixed(_) => {
                        w.buf.extend_from_slice(&b);
                        Ok(())
                    }
                    _ => {
                        w.u32(b.len() as u32);
                        w.buf.extend_from_slice(&b);
                        Ok(())
                    }
                }
            }
            (arity, _) => {
                let a = v.as_array().ok_or_else(|| cerr(p, "not an array"))?;
                match arity {
                    Arity::Fixed(n) if *n != a.len() => {
                        return Err(cerr(p, format!("{} elements, the type has {n}", a.len())))
                    }
                    Arity::Fixed(_) => {}
                    _ => w.u32(a.len() as u32),
                }
                for (i, x) in a.iter().enumerate() {
                    self.encode_one(&f.base, x, &format!("{p}[{i}]"), w)?;
                }
                Ok(())
            }
        }
    }

    fn encode_one(&mut self, b: &Base, v: &Value, p: &str, w: &mut Cdr) -> Result<(), CdrError> {
        let int = |v: &Value| -> Result<i128, CdrError> {
            v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from)).ok_or_else(|| cerr(p, "not an integer"))
        };
        let ranged = |lo: i128, hi: i128| -> Result<i128, CdrError> {
            let n = int(v)?;
            if n < lo || n > hi {
                return Err(cerr(p, format!("{n} is out of range")));
            }
            Ok(n)
        };
        let float = |v: &Value| -> Result<f64, CdrError> {
            match v {
                Value::Number(n) => n.as_f64().ok_or_else(|| cerr(p, "not a number")),
                Value::String(s) if s == "NaN" => Ok(f64::NAN),
                Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
                Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(cerr(p, "not a number")),
            }
        };
        match b {
            Base::Bool => w.buf.push(u8::from(v.as_bool().ok_or_else(|| cerr(p, "not a boolean"))?)),
            Base::Byte | Base::U8 => w.buf.push(ranged(0, 255)? as u8),
            Base::I8 => w.buf.push(ranged(-128, 127)? as i8 as u8),
            Base::I16 => w.put(&(ranged(i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes()),
            Base::U16 => w.put(&(ranged(0, u16::MAX.into())? as u16).to_le_bytes()),
            Base::I32 => w.put(&(ranged(i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes()),
            Base::U32 => w.put(&(ranged(0, u32::MAX.into())? as u32).to_le_bytes()),
            Base::I64 => w.put(&(ranged(i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes()),
            Base::U64 => w.put(&(ranged(0, u64::MAX.into())? as u64).to_le_bytes()),
            Base::F32 => w.put(&(float(v)? as f32).to_le_bytes()),
            Base::F64 => w.put(&float(v)?.to_le_bytes()),
            Base::Str => {
                let s = v.as_str().ok_or_else(|| cerr(p, "not a string"))?;
                w.u32(s.len() as u32 + 1);
                w.buf.extend_from_slice(s.as_bytes());
                w.buf.push(0);
            }
            Base::Msg(t) => self.encode_msg(t, v, p, w)?,
        }
        Ok(())
    }
}

fn path_or<'a>(path: &'a str, ty: &'a str) -> &'a str {
    if path.is_empty() {
        ty
    } else {
        path
    }
}

struct Cdr {
    buf: Vec<u8>,
}

impl Cdr {
    /// Write `b` aligned to its own size (offsets count from after the 4-byte header).
    fn put(&mut self, b: &[u8]) {
        let pos = self.buf.len() - 4;
        let pad = (b.len() - pos % b.len()) % b.len();
        self.buf.resize(self.buf.len() + pad, 0);
        self.buf.extend_from_slice(b);
    }
    fn u32(&mut self, n: u32) {
        self.put(&n.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib() -> (tempfile::TempDir, MsgLibrary) {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        w("builtin_interfaces/msg/Time.msg", "int32 sec\nuint32 nanosec\n");
        w("std_msgs/msg/Header.msg", "# a comment\nbuiltin_interfaces/Time stamp\nstring frame_id\n");
        w(
            "t/msg/M.msg",
            "int32 FOO=3\nstd_msgs/Header header\nuint8 a\nfloat64 b\nuint8[] data\nfloat32[2] f\nbool ok\n",
        );
        let l = MsgLibrary::new(vec![d.path().to_path_buf()]);
        (d, l)
    }

    #[test]
    fn cdr_layout_and_schema() {
        let (_d, mut l) = lib();
        let v = serde_json::json!({"header": {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "ab"}, "a": 7, "b": "NaN",
            "data": "AAEC", "f": [0.5, -1.0], "ok": true});
        let b = l.encode("t/msg/M", &v).unwrap();
        let mut e = vec![0, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', 0, 7];
        // the f64 lands on offset 16 from the header's end: already aligned to 8
        e.extend_from_slice(&f64::NAN.to_le_bytes());
        e.extend_from_slice(&[3, 0, 0, 0, 0, 1, 2]);
        e.extend_from_slice(&[0]); // align f32
        e.extend_from_slice(&0.5f32.to_le_bytes());
        e.extend_from_slice(&(-1.0f32).to_le_bytes());
        e.push(1);
        assert_eq!(b, e);
        let s = l.schema("t/msg/M").unwrap();
        assert!(s.starts_with("int32 FOO=3\nstd_msgs/Header header"), "{s}");
        assert!(s.contains(&format!("{}\nMSG: std_msgs/Header\n", "=".repeat(80))), "{s}");
        assert!(s.contains("MSG: builtin_interfaces/Time\nint32 sec"), "{s}");
    }

    #[test]
    fn removed_encrypted_or_mistyped_fields_are_named() {
        let (_d, mut l) = lib();
        let ok = serde_json::json!({"header": {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": ""}, "a": 7, "b": 1.5,
            "data": "", "f": [0, 1], "ok": false});
        assert!(l.encode("t/msg/M", &ok).is_ok());
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove("b");
        assert_eq!(l.encode("t/msg/M", &v).unwrap_err().field, "t/M");
        let mut v = ok.clone();
        v["header"]["frame_id"] =
            serde_json::json!({"__encrypted": true, "ciphertext": "x", "algorithm": "AES-256-GCM"});
        assert_eq!(l.encode("t/msg/M", &v).unwrap_err().field, "header.frame_id");
        let mut v = ok.clone();
        v["a"] = 256.into();
        assert_eq!(l.encode("t/msg/M", &v).unwrap_err(), cerr("a", "256 is out of range"));
        let mut v = ok;
        v["f"] = serde_json::json!([1]);
        assert_eq!(l.encode("t/msg/M", &v).unwrap_err().field, "f");
        assert!(l.encode("nope/msg/X", &v).unwrap_err().reason.contains("no nope/msg/X.msg"));
    }
}
