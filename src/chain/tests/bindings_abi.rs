//! Every function/event/error declared in `bindings.rs` exists with the same canonical signature
//! (hence selector/topic0) in the SDK ABI JSON of `test/fixtures/sdk/abi/`, and its selector is
//! listed in the matching SIGNATURES.txt.

use std::collections::HashSet;
use std::path::Path;

use alloy::primitives::keccak256;
use peaqos_chain::bindings::*;
use serde_json::Value;

const ABI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/fixtures/sdk/abi");

fn canonical_type(p: &Value) -> String {
    let t = p["type"].as_str().unwrap();
    if let Some(rest) = t.strip_prefix("tuple") {
        let inner: Vec<String> = p["components"].as_array().unwrap().iter().map(canonical_type).collect();
        format!("({}){}", inner.join(","), rest)
    } else {
        t.to_string()
    }
}

/// (kind, canonical signature) of every item in the given ABI files.
fn abi_items(files: &[&str]) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(ABI).join(f)).unwrap()).unwrap();
        let items = v.as_array().cloned().or_else(|| v["abi"].as_array().cloned()).unwrap();
        for it in items {
            let kind = it["type"].as_str().unwrap_or("").to_string();
            if !["function", "event", "error"].contains(&kind.as_str()) {
                continue;
            }
            let ins: Vec<String> =
                it["inputs"].as_array().map(|a| a.iter().map(canonical_type).collect()).unwrap_or_default();
            out.insert((kind, format!("{}({})", it["name"].as_str().unwrap(), ins.join(","))));
        }
    }
    out
}

fn listed_selectors() -> HashSet<String> {
    let mut out = HashSet::new();
    for d in ["gen1-sdk-0.11.2", "gen2-sdk-0.12.1"] {
        let s = std::fs::read_to_string(Path::new(ABI).join(d).join("SIGNATURES.txt")).unwrap();
        for tok in s.split_whitespace() {
            if tok.starts_with("0x") && (tok.len() == 10 || tok.len() == 66) {
                out.insert(tok.to_lowercase());
            }
        }
    }
    out
}

fn check(label: &str, files: &[&str], funcs: &[&str], events: &[&str], errors: &[&str]) {
    let items = abi_items(files);
    let listed = listed_selectors();
    for (kind, sigs) in [("function", funcs), ("event", events), ("error", errors)] {
        for s in sigs {
            assert!(items.contains(&(kind.to_string(), s.to_string())), "{label}: {kind} {s} not in {files:?}");
            let h = keccak256(s.as_bytes());
            let sel = if kind == "event" {
                format!("{h:#x}")
            } else {
                format!("0x{}", alloy::primitives::hex::encode(&h[..4]))
            };
            assert!(listed.contains(&sel), "{label}: {kind} {s} selector {sel} not in SIGNATURES.txt");
        }
    }
}

#[test]
fn declared_members_match_sdk_abis() {
    assert!(Path::new(ABI).is_dir(), "{ABI} missing: the SDK ABIs are part of the repository");
    let g1 = |f: &str| format!("gen1-sdk-0.11.2/{f}.json");
    let g2 = |f: &str| format!("gen2-sdk-0.12.1/{f}.json");
    check("IBatch", &[&g2("BatchPrecompile")], IBatch::IBatchCalls::SIGNATURES, IBatch::IBatchEvents::SIGNATURES, &[]);
    check("IDid", &[&g1("DIDPrecompile")], IDid::IDidCalls::SIGNATURES, &[], IDid::IDidErrors::SIGNATURES);
    check(
        "IEventRegistry",
        &[&g1("EventRegistry"), &g2("EventRegistry")],
        IEventRegistry::IEventRegistryCalls::SIGNATURES,
        IEventRegistry::IEventRegistryEvents::SIGNATURES,
        IEventRegistry::IEventRegistryErrors::SIGNATURES,
    );
    check(
        "IIdentityRegistry",
        &[&g1("IdentityRegistry")],
        IIdentityRegistry::IIdentityRegistryCalls::SIGNATURES,
        IIdentityRegistry::IIdentityRegistryEvents::SIGNATURES,
        IIdentityRegistry::IIdentityRegistryErrors::SIGNATURES,
    );
    check(
        "IIdentityStaking",
        &[&g1("IdentityStaking")],
        &[],
        &[],
        IIdentityStaking::IIdentityStakingErrors::SIGNATURES,
    );
    check(
        "IMachineNft",
        &[&g1("MachineNFT")],
        IMachineNft::IMachineNftCalls::SIGNATURES,
        IMachineNft::IMachineNftEvents::SIGNATURES,
        IMachineNft::IMachineNftErrors::SIGNATURES,
    );
    check(
        "IMachineStateAndSync",
        &[&g2("MachineStateAndSync")],
        IMachineStateAndSync::IMachineStateAndSyncCalls::SIGNATURES,
        IMachineStateAndSync::IMachineStateAndSyncEvents::SIGNATURES,
        IMachineStateAndSync::IMachineStateAndSyncErrors::SIGNATURES,
    );
    check(
        "IMachineRegistry",
        &[&g2("MachineRegistry")],
        IMachineRegistry::IMachineRegistryCalls::SIGNATURES,
        IMachineRegistry::IMachineRegistryEvents::SIGNATURES,
        IMachineRegistry::IMachineRegistryErrors::SIGNATURES,
    );
    check(
        "IMachineSubscription",
        &[&g2("MachineSubscription")],
        IMachineSubscription::IMachineSubscriptionCalls::SIGNATURES,
        IMachineSubscription::IMachineSubscriptionEvents::SIGNATURES,
        IMachineSubscription::IMachineSubscriptionErrors::SIGNATURES,
    );
    check(
        "IMachineAccountFactory",
        &[&g1("MachineAccountFactory")],
        IMachineAccountFactory::IMachineAccountFactoryCalls::SIGNATURES,
        IMachineAccountFactory::IMachineAccountFactoryEvents::SIGNATURES,
        IMachineAccountFactory::IMachineAccountFactoryErrors::SIGNATURES,
    );
    check(
        "IMachineNftAdapter",
        &[&g1("MachineNFTAdapter")],
        IMachineNftAdapter::IMachineNftAdapterCalls::SIGNATURES,
        IMachineNftAdapter::IMachineNftAdapterEvents::SIGNATURES,
        IMachineNftAdapter::IMachineNftAdapterErrors::SIGNATURES,
    );
    check("IInfoDesk", &[&g2("InfoDesk")], IInfoDesk::IInfoDeskCalls::SIGNATURES, &[], &[]);
    check(
        "IPeaqToken",
        &[&g2("PeaqToken")],
        IPeaqToken::IPeaqTokenCalls::SIGNATURES,
        IPeaqToken::IPeaqTokenEvents::SIGNATURES,
        &[],
    );
    // The revert decoder's table covers exactly declared errors.
    for s in peaqos_chain::revert::declared_error_signatures() {
        assert!(s.contains('('));
    }
}

#[test]
fn revert_codes_match_sdk_tables() {
    use alloy::sol_types::SolError;
    use peaqos_chain::revert::{decode, RevertScope};
    let d = decode(RevertScope::EventsGen2, &IEventRegistry::SubscriptionNotEligible { status: 3 }.abi_encode());
    assert_eq!(
        (d.code.as_str(), d.message.as_str()),
        ("SUBSCRIPTION_NOT_ELIGIBLE", "Machine subscription is not Active or Grace")
    );
    let d = decode(
        RevertScope::EventsGen2,
        &IMachineRegistry::ERC721NonexistentToken { tokenId: alloy::primitives::U256::from(5) }.abi_encode(),
    );
    assert_eq!(d.code, "MACHINE_NOT_FOUND");
    let d = decode(RevertScope::EventsGen2, &IEventRegistry::InvalidEventType {}.abi_encode());
    assert_eq!((d.code.as_str(), d.message.as_str()), ("InvalidEventType", "Invalid event type"));
    let d = decode(RevertScope::Legacy, &IIdentityRegistry::AlreadyRegistered {}.abi_encode());
    assert_eq!((d.code.as_str(), d.message.as_str()), ("AlreadyRegistered", "Machine address is already registered"));
    let d = decode(RevertScope::Legacy, &IMachineNft::RecipientMustBeMachineOwner {}.abi_encode());
    assert_eq!(d.message, "Operator mint requires recipient to be the machine owner");
    let d = decode(RevertScope::Activation, &IMachineSubscription::AlreadyActivated {}.abi_encode());
    assert_eq!(d.code, "ALREADY_ACTIVATED");
    let d = decode(RevertScope::Activation, &IMachineRegistry::CredentialSubjectMismatch {}.abi_encode());
    assert_eq!((d.code.as_str(), d.name.as_str()), ("CONTRACT_REVERTED", "CredentialSubjectMismatch"));
    let d = decode(RevertScope::Legacy, &IBuiltinErrors::Error { message: "Cannot find the item".into() }.abi_encode());
    assert_eq!(d.code, "ATTRIBUTE_NOT_FOUND");
    let d =
        decode(RevertScope::Legacy, &IBuiltinErrors::Error { message: "AttributeAlreadyExist".into() }.abi_encode());
    assert_eq!(d.code, "ATTRIBUTE_ALREADY_EXISTS");
    let d = decode(RevertScope::Legacy, &IBuiltinErrors::Error { message: "boom".into() }.abi_encode());
    assert_eq!((d.code.as_str(), d.message.as_str()), ("TX_REVERTED", "Transaction reverted: boom"));
    let d = decode(RevertScope::EventsGen2, &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(d.code, "TX_REVERTED");
}
