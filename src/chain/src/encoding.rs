//! Calldata encoders, byte-identical to the SDK (vectors in `test/fixtures/sdk/vectors/`).
//!
//! * `submitEvent(uint256,uint8,uint256,string,uint256,bytes32,uint8,uint256,bytes32,bytes)` (`0xe58a43ca`),
//!   currency 4th (SDK "PRO-338").
//! * `batchAll(address[],uint256[],bytes[],uint64[])` (`0x96e292b8`) with `value=0`, `gasLimit=0` per subcall.
//! * gen 1: `register()`, `registerFor(address)`, `mint(uint256,address)`, `tokenIdOf(uint256)`,
//!   DID precompile `addAttribute(address,bytes,bytes,uint32)` / `readAttribute(address,bytes)`.
//! * Machine-DID attributes (SPEC §3.4), in this order: `machineId`, `nftTokenId`, `operator`,
//!   `documentation_url`, `data_api`, `data_visibility`; proxy DID: `machineId`, `machines` where
//!   `machines` is Python `json.dumps(list)` = `"[42, 43, 44]"`.
//! * gen 1 smart accounts: `createAccount(address,address,uint256)` / `getAddress(...)`.
//! * gen 1 bridge: MachineNFT `getApproved` / `approve`, MachineNFTAdapter `quoteSend` / `send`.
//! * gen 2: `activateMachine(DIDDocument,string,bytes,address,uint8)` (`0xda3802f6`) and the
//!   off-chain machine id `uint256(keccak256(abi.encode(string,bytes)))`.

use alloy::primitives::{keccak256, Address, Bytes, U256};
use alloy::sol_types::{SolCall, SolValue};

use crate::bindings::*;
use crate::error::{ChainError, Result};
use crate::validation::ValidEvent;

/// SDK `DID_MAX_NAME_BYTES`.
pub const DID_MAX_NAME_BYTES: usize = 64;
/// SDK `DID_MAX_VALUE_BYTES`.
pub const DID_MAX_VALUE_BYTES: usize = 2560;

pub fn submit_event(e: &ValidEvent) -> Bytes {
    IEventRegistry::submitEventCall {
        machineId: e.machine_id,
        eventType: e.event_type,
        value: e.value,
        currency: e.currency.clone(),
        timestamp: e.timestamp,
        dataHash: e.data_hash,
        trustLevel: e.trust_level,
        sourceChainId: e.source_chain_id,
        sourceTxHash: e.source_tx_hash,
        metadata: e.metadata.clone().into(),
    }
    .abi_encode()
    .into()
}

/// `batchAll` of subcalls `(to, calldata)` with value 0 and gasLimit 0 each (SDK behaviour).
pub fn batch_all(calls: &[(Address, Bytes)]) -> Bytes {
    IBatch::batchAllCall {
        to: calls.iter().map(|c| c.0).collect(),
        value: vec![U256::ZERO; calls.len()],
        callData: calls.iter().map(|c| c.1.clone()).collect(),
        gasLimit: vec![0u64; calls.len()],
    }
    .abi_encode()
    .into()
}

/// The subcalls of a `batchAll` calldata when every subcall carries value 0 and gasLimit 0 (the
/// shape [`batch_all`] makes); `None` for anything else.
pub fn batch_all_calls(input: &[u8]) -> Option<Vec<(Address, Bytes)>> {
    let c = IBatch::batchAllCall::abi_decode(input).ok()?;
    let n = c.to.len();
    if c.value.len() != n || c.callData.len() != n || c.gasLimit.len() != n {
        return None;
    }
    if c.value.iter().any(|v| !v.is_zero()) || c.gasLimit.iter().any(|g| *g != 0) {
        return None;
    }
    Some(c.to.into_iter().zip(c.callData).collect())
}

pub fn batch_submit_events(registry: Address, events: &[ValidEvent]) -> Bytes {
    let calls: Vec<(Address, Bytes)> = events.iter().map(|e| (registry, submit_event(e))).collect();
    batch_all(&calls)
}

pub fn register() -> Bytes {
    IIdentityRegistry::registerCall {}.abi_encode().into()
}
pub fn register_for(machine: Address) -> Bytes {
    IIdentityRegistry::registerForCall { machineAddress: machine }.abi_encode().into()
}
pub fn machine_id_of_owner(owner: Address) -> Bytes {
    IIdentityRegistry::machineIdOfOwnerCall { addr: owner }.abi_encode().into()
}
pub fn mint(machine_id: U256, recipient: Address) -> Bytes {
    IMachineNft::mintCall { machineId: machine_id, recipient }.abi_encode().into()
}
pub fn token_id_of(machine_id: U256) -> Bytes {
    IMachineNft::tokenIdOfCall { machineId: machine_id }.abi_encode().into()
}
pub fn read_attribute(did_account: Address, name: &str) -> Bytes {
    IDid::readAttributeCall { didAccount: did_account, name: name.as_bytes().to_vec().into() }.abi_encode().into()
}
pub fn add_attribute(did_account: Address, name: &str, value: &str) -> Bytes {
    IDid::addAttributeCall {
        didAccount: did_account,
        name: name.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        validityFor: 0,
    }
    .abi_encode()
    .into()
}

/// `data_visibility` values accepted by the CLI.
pub const DATA_VISIBILITY: [&str; 3] = ["public", "private", "onchain"];

/// Inputs of `write_machine_did_attributes` (SPEC §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDidAttributes {
    pub machine_id: U256,
    pub nft_token_id: U256,
    /// Operator address in proxy mode (`did:peaq:<0x…>`), `None` in self mode (`""`).
    pub operator: Option<Address>,
    pub documentation_url: String,
    pub data_api: String,
    pub data_visibility: String,
}

fn check_ascii_value(field: &str, v: &str, allow_empty: bool) -> Result<()> {
    if !allow_empty && v.is_empty() {
        return Err(ChainError::validation(field, "non-empty", format!("{field} must not be empty")));
    }
    if !v.is_ascii() {
        return Err(ChainError::validation(field, "ascii", format!("{field} must be ASCII")));
    }
    if v.len() > DID_MAX_VALUE_BYTES {
        return Err(ChainError::validation(
            field,
            "<= 2560 bytes",
            format!("{field} must be at most {DID_MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

impl MachineDidAttributes {
    /// The six `(name, value)` pairs, validated (SDK limits: ASCII, ≤ 2560 bytes, non-empty URLs).
    pub fn pairs(&self) -> Result<Vec<(&'static str, String)>> {
        if self.machine_id.is_zero() {
            return Err(ChainError::validation("machine_id", "> 0", "machine_id must be a positive integer"));
        }
        check_ascii_value("documentation_url", &self.documentation_url, false)?;
        check_ascii_value("data_api", &self.data_api, false)?;
        if !DATA_VISIBILITY.contains(&self.data_visibility.as_str()) {
            return Err(ChainError::validation(
                "data_visibility",
                "public|private|onchain",
                "data_visibility must be one of public, private, onchain",
            ));
        }
        let operator = self.operator.map(|a| format!("did:peaq:{}", a.to_checksum(None))).unwrap_or_default();
        Ok(vec![
            ("machineId", self.machine_id.to_string()),
            ("nftTokenId", self.nft_token_id.to_string()),
            ("operator", operator),
            ("documentation_url", self.documentation_url.clone()),
            ("data_api", self.data_api.clone()),
            ("data_visibility", self.data_visibility.clone()),
        ])
    }
}

/// Python `json.dumps(list_of_ints)`: `[42, 43, 44]`.
pub fn python_int_list(ids: &[U256]) -> String {
    let parts: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Proxy DID pairs `machineId`, `machines` (non-empty, all > 0, ≤ 2560 bytes).
pub fn proxy_did_pairs(proxy_machine_id: U256, machine_ids: &[U256]) -> Result<Vec<(&'static str, String)>> {
    if proxy_machine_id.is_zero() {
        return Err(ChainError::validation("proxy_machine_id", "> 0", "proxy_machine_id must be a positive integer"));
    }
    if machine_ids.is_empty() {
        return Err(ChainError::validation("machine_ids", "non-empty", "machine_ids must not be empty"));
    }
    if machine_ids.iter().any(|m| m.is_zero()) {
        return Err(ChainError::validation("machine_ids", "> 0", "every machine id must be a positive integer"));
    }
    let machines = python_int_list(machine_ids);
    check_ascii_value("machine_ids", &machines, false)?;
    Ok(vec![("machineId", proxy_machine_id.to_string()), ("machines", machines)])
}

/// `batchAll` of `addAttribute(did_account, name, value, 0)` to the DID precompile.
pub fn did_attributes_batch(did: Address, did_account: Address, pairs: &[(&str, String)]) -> Bytes {
    let calls: Vec<(Address, Bytes)> = pairs.iter().map(|(n, v)| (did, add_attribute(did_account, n, v))).collect();
    batch_all(&calls)
}

/// Gen-2 `activateMachine` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateArgs {
    pub doc: DIDDocument,
    pub machine_type: String,
    pub credential_subject: Vec<u8>,
    pub manufacturer: Address,
    pub tier: u8,
}

pub fn activate_machine(a: &ActivateArgs) -> Bytes {
    IMachineStateAndSync::activateMachineCall {
        doc: a.doc.clone(),
        machineType_: a.machine_type.clone(),
        credentialSubject_: a.credential_subject.clone().into(),
        manufacturer_: a.manufacturer,
        tier: a.tier,
    }
    .abi_encode()
    .into()
}

/// Off-chain `MachineRegistry.computeTokenId`: `uint256(keccak256(abi.encode(string, bytes)))`.
pub fn compute_machine_id(machine_type: &str, credential_subject: &[u8]) -> U256 {
    let enc = (machine_type.to_string(), Bytes::from(credential_subject.to_vec())).abi_encode_params();
    U256::from_be_bytes(keccak256(enc).0)
}

pub fn approve(spender: Address, amount: U256) -> Bytes {
    IPeaqToken::approveCall { spender, amount }.abi_encode().into()
}

/// Gen 1: `MachineAccountFactory.createAccount(owner, machine, salt)` (`0x1230aea2`), as SDK 0.11.2
/// `deploy_smart_account` sends it.
pub fn create_account(owner: Address, machine: Address, salt: U256) -> Bytes {
    IMachineAccountFactory::createAccountCall { owner, machine, salt }.abi_encode().into()
}

/// Gen 1: `MachineAccountFactory.getAddress(owner, machine, salt)` (`0x08a6354e`), the CREATE2
/// prediction SDK 0.11.2 `get_smart_account_address` reads.
pub fn get_account_address(owner: Address, machine: Address, salt: U256) -> Bytes {
    IMachineAccountFactory::getAddressCall { owner, machine, salt }.abi_encode().into()
}

/// Gen-1 bridge: SDK 0.11.2 `build_send_param(dst_eid, recipient, token_id, options)`: the
/// recipient left-padded to 32 bytes, empty compose message and ONFT command.
pub fn bridge_send_param(
    dst_eid: u32,
    recipient: Address,
    token_id: U256,
    options: &[u8],
) -> IMachineNftAdapter::SendParam {
    let mut to = [0u8; 32];
    to[12..].copy_from_slice(recipient.as_slice());
    IMachineNftAdapter::SendParam {
        dstEid: dst_eid,
        to: to.into(),
        tokenId: token_id,
        extraOptions: options.to_vec().into(),
        composeMsg: Bytes::new(),
        onftCmd: Bytes::new(),
    }
}

/// Gen-1 bridge: `quoteSend(sendParam, false)` (`0xc6414e7b`).
pub fn quote_send(p: &IMachineNftAdapter::SendParam) -> Bytes {
    IMachineNftAdapter::quoteSendCall { _sendParam: p.clone(), _payInLzToken: false }.abi_encode().into()
}

/// Gen-1 bridge: `send(sendParam, (nativeFee, 0), refundAddress)` (`0x21eb730b`), sent with
/// `nativeFee` as value.
pub fn send_nft(p: &IMachineNftAdapter::SendParam, native_fee: U256, refund: Address) -> Bytes {
    IMachineNftAdapter::sendCall {
        _sendParam: p.clone(),
        _fee: IMachineNftAdapter::MessagingFee { nativeFee: native_fee, lzTokenFee: U256::ZERO },
        _refundAddress: refund,
    }
    .abi_encode()
    .into()
}

/// Gen-1 MachineNFT `approve(spender, tokenId)` (the bridge's approval pre-flight).
pub fn approve_nft(spender: Address, token_id: U256) -> Bytes {
    IMachineNft::approveCall { to: spender, tokenId: token_id }.abi_encode().into()
}

/// Gen-1 MachineNFT `getApproved(tokenId)`.
pub fn get_approved(token_id: U256) -> Bytes {
    IMachineNft::getApprovedCall { tokenId: token_id }.abi_encode().into()
}
