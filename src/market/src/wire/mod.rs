//! Every request and response shape of the orchestration endpoints this crate calls, in one place
//! (the SDK marks the API experimental: a shape change is a change here). Keys are camelCase as on
//! the wire (ORCHESTRATION.md §3).
//!
//! Strictness follows SDK 0.12.1 (§1.3, §1.6): responses may carry **unknown fields** (the SDK
//! ignores them, so no response type uses `deny_unknown_fields`), but a **required field** missing
//! or of the wrong type, or a literal out of its set (`status`, `verificationMethod`,
//! `resolutionSource`), is `INVALID_RESPONSE_SHAPE` where the SDK's decoders are strict (machines,
//! identity challenge). Where the SDK reads a value without checking it (agent and endpoint
//! `status`), an unknown value is kept as `Other`. Optional lists/maps may be absent or `null`
//! (read as empty). Requests omit unset optional fields, except the heartbeat's `leaseTtlSeconds`,
//! which the SDK always sends (as `null` when unset).
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{MarketError, Result};
use crate::secret::Secret;

mod buyer;
pub use buyer::*;

const UINT256_MAX: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// True for a canonical decimal `uint256`: ASCII digits, no sign or leading zero (except `"0"`).
pub fn is_canonical_decimal_u256(s: &str) -> bool {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    digits && (s.len() < UINT256_MAX.len() || (s.len() == UINT256_MAX.len() && s <= UINT256_MAX))
}

/// True for `did:peaq:<canonical decimal uint256>`, the only identity form in responses.
pub fn is_canonical_machine_did(s: &str) -> bool {
    s.strip_prefix("did:peaq:").is_some_and(is_canonical_decimal_u256)
}

/// `did:peaq:<machine_id>` for an on-chain machine id given in decimal.
pub fn machine_did(machine_id: &str) -> Result<String> {
    if is_canonical_decimal_u256(machine_id) {
        Ok(format!("did:peaq:{machine_id}"))
    } else {
        Err(MarketError::validation(
            "machine_id",
            "must be a canonical decimal uint256 (no sign, space or leading zero)",
        ))
    }
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---- envelopes (§3.1) ---------------------------------------------------------------------------

/// `{ "error": { "code", "message", "details"? } }` (extra keys allowed).
#[derive(Debug, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

/// A page of a list endpoint: `{ "items": [T], "nextCursor"?: string|null }`.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ---- identity (§3.3) ----------------------------------------------------------------------------

/// `POST /machine-identity/challenges` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityChallengeRequest {
    pub identity_ref: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerificationMethod {
    #[serde(rename = "eip191")]
    Eip191,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolutionSource {
    #[serde(rename = "peaqos-mcr")]
    PeaqosMcr,
}

/// A challenge to sign (EIP-191 over `message`, verbatim) with a key in `controllerAddresses`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineIdentityChallenge {
    pub challenge_id: String,
    pub identity_ref: String,
    pub message: String,
    pub expires_at: String,
    pub verification_method: VerificationMethod,
    pub controller_addresses: Vec<String>,
}

impl MachineIdentityChallenge {
    /// The SDK's checks beyond types: non-empty id, canonical DID, at least one controller.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.challenge_id.is_empty() {
            return Err("item.challengeId must be a non-empty string".into());
        }
        if !is_canonical_machine_did(&self.identity_ref) {
            return Err("item.identityRef must be a canonical did:peaq:<decimal> machine DID".into());
        }
        if self.controller_addresses.is_empty() {
            return Err("item.controllerAddresses must name at least one controller".into());
        }
        Ok(())
    }
}

/// `identityProof` of a create/patch request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProofInput {
    pub challenge_id: String,
    /// `0x` + hex(r ‖ s ‖ v), v = 27/28.
    pub signature: String,
}

// ---- machines (§3.2) ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineStatus {
    Draft,
    Active,
    Degraded,
    Blocked,
    Archived,
}

/// `POST /machines` body. `labels` keys go out verbatim (the SDK camel-cases keys containing `_`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMachineRequest {
    pub display_name: String,
    pub owner_id: String,
    pub machine_type: String,
    pub runtime_profile: String,
    pub identity_ref: String,
    pub identity_proof: IdentityProofInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill_keys: Option<Vec<String>>,
}

/// `PATCH /machines/{id}` body: only the set fields are sent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMachineRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MachineStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_proof: Option<IdentityProofInput>,
}

/// A machine record (`mach_…`), decoded as strictly as the SDK does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub id: String,
    pub display_name: String,
    pub owner_id: String,
    pub machine_type: String,
    pub runtime_profile: String,
    pub status: MachineStatus,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub policy_ids: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub skill_keys: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub identity_ref: Option<String>,
    #[serde(default)]
    pub identity_proof: Option<MachineIdentityProof>,
}

impl Machine {
    /// The SDK's checks beyond types: non-empty id, canonical DIDs (`identityRef` required when
    /// `identity_required`, i.e. on the `POST /machines` answer).
    pub fn check(&self, identity_required: bool) -> std::result::Result<(), String> {
        if self.id.is_empty() {
            return Err("item.id must be a non-empty string".into());
        }
        match &self.identity_ref {
            None if identity_required => return Err("item.identityRef is required".into()),
            Some(r) if !is_canonical_machine_did(r) => {
                return Err("item.identityRef must be a canonical did:peaq:<decimal> machine DID".into())
            }
            _ => {}
        }
        if let Some(p) = &self.identity_proof {
            if !is_canonical_machine_did(&p.identity_ref) {
                return Err("item.identityProof.identityRef must be a canonical did:peaq:<decimal> machine DID".into());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineIdentityProof {
    pub method: VerificationMethod,
    pub identity_ref: String,
    pub signer_address: String,
    pub challenge_id: String,
    pub verified_at: String,
    pub challenge_expires_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub controller_addresses: Vec<String>,
    pub resolution_source: ResolutionSource,
}

// ---- machine agents (§3.4) ----------------------------------------------------------------------

/// `POST /machines/{id}/agents/enrollment` body (`{}` when nothing is set).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollAgentRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_provider_keys: Option<Vec<String>>,
}

/// Agent status; the SDK does not check it, so an unknown value is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Provisioned,
    Active,
    Revoked,
    #[serde(other)]
    Other,
}

/// A machine agent. The enrollment answer carries its one-time token as `provisioningToken` (SDK)
/// or `agentToken` (peaq's ROS 2 agent reads that key): see [`MachineAgent::token`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineAgent {
    pub id: String,
    pub machine_id: String,
    pub label: String,
    pub status: AgentStatus,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_provider_keys: Vec<String>,
    #[serde(default)]
    pub last_seen_at: Option<String>,
    #[serde(default)]
    pub provisioning_token: Option<Secret>,
    #[serde(default)]
    pub agent_token: Option<Secret>,
}

impl MachineAgent {
    /// The agent token: `provisioningToken`, else `agentToken` (blank values ignored).
    pub fn token(&self) -> Option<&Secret> {
        [&self.provisioning_token, &self.agent_token].into_iter().flatten().find(|s| !s.is_blank())
    }
}

/// One runtime endpoint the agent reports (and leases) with each heartbeat.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatEndpoint {
    /// `"qvac"` is the only literal in the SDK type.
    pub provider_key: String,
    pub endpoint_base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `none` | `api-key` | `bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_alias: Option<String>,
    /// `loopback` | `lan` | `vpn` | `public`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_path: Option<String>,
}

impl HeartbeatEndpoint {
    pub fn new(provider_key: impl Into<String>, endpoint_base_url: impl Into<String>) -> HeartbeatEndpoint {
        HeartbeatEndpoint {
            provider_key: provider_key.into(),
            endpoint_base_url: endpoint_base_url.into(),
            label: None,
            auth_type: None,
            auth_token: None,
            model_alias: None,
            network_scope: None,
            probe_path: None,
        }
    }
}

/// `POST /machine-agents/heartbeat` body (no auth header; the token is here). Endpoint keys go
/// out camelCase like the rest of the API (the SDK's snake_case there is a quirk, §1.3).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    pub machine_id: String,
    pub agent_id: String,
    pub agent_token: Secret,
    pub endpoints: Vec<HeartbeatEndpoint>,
    pub lease_ttl_seconds: Option<u32>,
}

/// Endpoint health as the server sees it; unknown values are `Other` (the SDK does not check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointHealth {
    Active,
    Degraded,
    Unreachable,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatEndpointResult {
    pub provider_key: String,
    pub endpoint_base_url: String,
    pub status: EndpointHealth,
    pub lease_expires_at: String,
    #[serde(default)]
    pub health_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResult {
    pub machine_id: String,
    pub agent_id: String,
    /// A number (the SDK does not check its type).
    pub lease_ttl_seconds: f64,
    pub observed_at: String,
    pub endpoints: Vec<HeartbeatEndpointResult>,
}

// ---- stream listings and delivery (§2.2; SDK `stream_listings.py`, `stream_delivery_setup.py`) --

/// Listing rail (`X402ListingRail` / `TransferListingRail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ListingRail {
    Transfer {
        destination: TransferDestination,
    },
    X402 {
        chain: String,
        token: String,
        #[serde(rename = "facilitatorUrl", skip_serializing_if = "Option::is_none", default)]
        facilitator_url: Option<String>,
    },
}

/// Where a direct transfer goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferDestination {
    pub chain: String,
    pub token: String,
    pub pay_to: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_address: Option<String>,
}

/// `StreamListingResource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListingResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: String,
    pub supports_live: bool,
}

/// `StreamListingDeliveryOptionInput` (the server fills in `mode` and `signaling`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOptionInput {
    pub transport_id: String,
    pub version: String,
    pub features: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// A listing's price. Not in the SDK's listing PATCH (it has no price field, yet the order a
/// `prepare-access` answers carries `amount` and `currency`): UNVERIFIED extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingPrice {
    /// Decimal string, per chunk.
    pub amount: String,
    pub currency: String,
}

/// `PATCH /machines/{m}/stream/listings/{listingId}` body (`StreamListingPurchaseFields` + price).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListingUpdate {
    pub resource: ListingResource,
    pub payment_rails: Vec<ListingRail>,
    pub delivery_options: Vec<DeliveryOptionInput>,
    pub price: ListingPrice,
}

/// `DeliveryCapabilityInput` of `PUT /machines/{m}/delivery-capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCapabilityInput {
    pub transport_id: String,
    pub version: String,
    pub features: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// `PUT /machines/{m}/delivery-capabilities` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCapabilitiesRequest {
    pub agent_id: String,
    pub capabilities: Vec<DeliveryCapabilityInput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A registered capability as answered (`DeliveryCapability`: `transportId`, `version` required).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCapability {
    pub transport_id: String,
    pub version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: Vec<String>,
}

/// `DeliveryCapabilitiesResponse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCapabilities {
    pub machine_id: String,
    pub agent_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Vec<DeliveryCapability>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_types: Vec<String>,
    pub status: String,
    pub updated_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

// ---- stream purchases (§2.2; SDK `purchases.py`) -----------------------------------------------

/// What a purchase selects of a listing (`PurchaseResourceSelection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseSelection {
    #[serde(default)]
    pub chunk_ids: Option<Vec<String>>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

/// `PurchaseResource`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub listing_id: String,
    #[serde(default)]
    pub selection: Option<PurchaseSelection>,
}

/// `BuyerPublicKey`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuyerPublicKey {
    #[serde(rename = "type")]
    pub kind: String,
    pub public_key_hex: String,
}

/// `PurchaseBuyer` (the fields the seller uses).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseBuyer {
    pub id: String,
    pub public_key: BuyerPublicKey,
}

/// `PurchasePaymentState` / `PurchaseDeliveryState` (status and reference).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseStatus {
    pub status: String,
    #[serde(default)]
    pub reference: Option<String>,
    /// The payment's rail (`transfer`, `x402`); absent on the delivery state.
    #[serde(default)]
    pub rail: Option<String>,
}

/// `Purchase` (`GET /purchases/{id}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Purchase {
    pub id: String,
    pub status: String,
    pub resource: PurchaseResource,
    pub buyer: PurchaseBuyer,
    pub payment: PurchaseStatus,
    pub delivery: PurchaseStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// The buyer part of one access item (`peaq.stream.buyer-access.v1`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessBuyer {
    pub recipient_id: String,
    pub recipient_type: String,
    pub algorithm: String,
    pub public_key_hex: String,
    pub wrapped_key_hex: String,
}

/// One chunk key for the buyer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessItem {
    pub schema_version: String,
    pub chunk_id: String,
    pub buyer: AccessBuyer,
}

/// `delivery.connect` of prepare-access.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryConnect {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub expires_at: String,
}

/// `delivery` of prepare-access.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareDelivery {
    pub mode: String,
    pub transport_id: String,
    pub connect: DeliveryConnect,
}

/// `POST /stream/orders/{purchaseId}/prepare-access` body: agent credentials in the body (§0).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareAccessRequest {
    pub machine_id: String,
    pub agent_id: String,
    pub agent_token: Secret,
    pub items: Vec<AccessItem>,
    pub delivery: PrepareDelivery,
}

/// The order part of the prepare-access answer (what the seller keeps).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedOrder {
    pub id: String,
    pub status: String,
    pub delivery_session_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub chunk_ids: Vec<String>,
}

/// Raw prepare-access answer `{item, access, deliverySession}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareAccessResponse {
    pub item: PreparedOrder,
}

/// `PurchaseEventActor`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseEventActor {
    #[serde(rename = "type")]
    pub kind: String,
    pub machine_id: String,
    pub agent_id: String,
}

/// `POST /purchases/{id}/events` body.
#[derive(Debug, Clone, Serialize)]
pub struct PurchaseEventRequest {
    pub actor: PurchaseEventActor,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// `PurchaseEventResponse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseEvent {
    pub id: String,
    pub purchase_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
}

// ---- observability (§3.13) ----------------------------------------------------------------------

/// `GET /health` (raw, no envelope): `{"ok": true}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_decimal_dids() {
        assert!(is_canonical_machine_did("did:peaq:0"));
        assert!(is_canonical_machine_did("did:peaq:42"));
        assert!(is_canonical_machine_did(&format!("did:peaq:{UINT256_MAX}")));
        for bad in ["did:peaq:", "did:peaq:042", "did:peaq:-1", "did:peaq: 1", "did:peaq:0x2a", "peaqos:machine:1"] {
            assert!(!is_canonical_machine_did(bad), "{bad}");
        }
        let over =
            format!("did:peaq:{}", "115792089237316195423570985008687907853269984665640564039457584007913129639936");
        assert!(!is_canonical_machine_did(&over));
        assert_eq!(machine_did("7").unwrap(), "did:peaq:7");
        assert!(machine_did("07").unwrap_err().to_string().contains("machine_id"));
    }

    #[test]
    fn tolerant_where_the_sdk_is_tolerant() {
        let m: Machine = serde_json::from_value(serde_json::json!({
            "id": "mach_1", "displayName": "r", "ownerId": "o", "machineType": "t", "runtimeProfile": "p",
            "status": "active", "createdAt": "x", "updatedAt": "y", "capabilities": null, "newField": 1
        }))
        .unwrap();
        assert!(m.capabilities.is_empty() && m.labels.is_empty());
        let a: MachineAgent = serde_json::from_value(serde_json::json!({
            "id": "a", "machineId": "m", "label": "l", "status": "sleeping", "createdAt": "x", "updatedAt": "y",
            "agentToken": "tok-secret-1"
        }))
        .unwrap();
        assert_eq!(a.status, AgentStatus::Other);
        assert_eq!(a.token().unwrap().expose(), "tok-secret-1");
        assert!(!format!("{a:?}").contains("tok-secret-1"));
    }
}

/// `UpsertRuntimeEndpointRequest` of `PUT /machines/{m}/runtime-endpoints/{providerKey}`
/// (ORCHESTRATION.md §2.1 #19, §3.6). No auth token is ever sent from here (`authType: none`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeEndpointUpsert {
    pub endpoint_base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_path: Option<String>,
    /// `active`, `degraded` or `unreachable`: the node's own health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `RuntimeEndpoint` (the fields this node reads; the SDK requires all of these).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeEndpoint {
    pub id: String,
    pub machine_id: String,
    pub provider_key: String,
    pub endpoint_base_url: String,
    pub status: String,
    pub network_scope: String,
    pub auth_type: String,
    pub has_auth_token: bool,
    pub updated_at: String,
}
