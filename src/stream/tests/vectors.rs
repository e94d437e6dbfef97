//! Reproduce the SDK chunk-chain vector (SPEC §8.7, `vectors/stream.json`, computed with
//! peaq-os-sdk 0.12.1) byte for byte with injected randomness.

use peaqos_stream::chain::{build_chunk_chain, decrypt_chunk, verify_chain, ChunkSigner, RecipientSpec, VectorRandom};
use peaqos_stream::crypto::x25519_public;
use peaqos_stream::envelope::{Chunk, RecipientType};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/sdk_stream_vectors.json")).unwrap()
}

fn h32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

#[test]
fn sdk_chain_vector_reproduces_byte_for_byte() {
    let v = vectors();
    let cc = &v["chunk_chain"];
    let inp = &cc["inputs"];
    let data = inp["data_utf8"].as_str().unwrap().as_bytes();
    let did = cc["chain"]["did"].as_str().unwrap();
    let key_id = cc["chain"]["chunks"][0]["signature"]["key_id"].as_str().unwrap();
    let signer = ChunkSigner::new(h32(&inp["ed25519_sk"]), did, key_id).unwrap();
    assert_eq!(hex::encode(signer.public_key), inp["ed25519_pk"].as_str().unwrap());
    let rec = |id: &str, t, sk: &Value| RecipientSpec {
        recipient_id: id.into(),
        recipient_type: t,
        public_key: x25519_public(&h32(sk)),
    };
    let recipients = vec![
        rec("owner-1", RecipientType::Owner, &inp["owner_x25519_sk"]),
        rec("operator-1", RecipientType::Operator, &inp["operator_x25519_sk"]),
        rec("machine-1", RecipientType::Machine, &inp["machine_x25519_sk"]),
    ];
    let built = build_chunk_chain(data, 64, did, &signer, &recipients, &mut VectorRandom::default()).unwrap();
    assert_eq!(built.source_hash, cc["chain"]["source_hash"].as_str().unwrap());
    for (i, c) in built.chunks.iter().enumerate() {
        assert_eq!(c.to_snake_json().unwrap(), cc["chain"]["chunks"][i], "chunk {i} envelope");
        assert_eq!(hex::encode(&built.encrypted_data[i]), cc["encrypted_data_hex"][i.to_string()].as_str().unwrap());
    }
    // Parse the SDK's JSON and verify/decrypt with ours.
    let chunks: Vec<Chunk> =
        cc["chain"]["chunks"].as_array().unwrap().iter().map(|c| serde_json::from_value(c.clone()).unwrap()).collect();
    let ver = verify_chain(&chunks, |i| Some(built.encrypted_data[i as usize].clone()));
    assert!(ver.valid, "{ver:?}");
    assert_eq!(ver.total_chunks, Some(2));
    let owner = chunks[0].recipient(RecipientType::Owner).unwrap();
    let pt = decrypt_chunk(&chunks[0], owner, &h32(&inp["owner_x25519_sk"]), &built.encrypted_data[0]).unwrap();
    assert_eq!(pt.as_slice(), &data[..64]);
    // The camelCase wire form parses back to the same envelope.
    let wire = serde_json::to_vec(&chunks[1].to_wire_json().unwrap()).unwrap();
    assert!(std::str::from_utf8(&wire).unwrap().contains("\"wrappedKeyHex\""));
    assert_eq!(Chunk::from_json_bytes(&wire, "wire").unwrap(), chunks[1]);
}
