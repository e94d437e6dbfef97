//! What a robot offers for sale: one stream listing per topic with a `sale:` block, and the
//! delivery capabilities behind them (storage mode: buyers fetch the encrypted chunks from the
//! topic's storage by the `storageRef` of each chunk envelope, and get the chunk keys through
//! `prepare-access`).
//!
//! Shapes follow the SDK's `StreamListingPurchaseFields` / `DeliveryCapabilityInput`
//! (ORCHESTRATION.md §2.2). The SDK fixes no transport id or features for storage delivery; the
//! ones below ([`TRANSPORT_ID`], [`FEATURES`]) are this node's names (UNVERIFIED against the real
//! orchestrator), and so is the listing `price` (the SDK's PATCH carries none).
use peaqos_stream::storage::DestinationConfig;
use peaqos_stream::topic_config::{PaymentRailConfig, SaleConfig, TopicStreamConfig};

use crate::money::Amount;
use crate::seller::{Listing, Offers};
use crate::settle::{SaleTerms, TransferTerms};
use crate::wire::{
    DeliveryCapabilityInput, DeliveryOptionInput, ListingPrice, ListingRail, ListingResource, ListingUpdate,
    TransferDestination,
};

/// Transport id of storage delivery (chunks fetched by their storage reference).
pub const TRANSPORT_ID: &str = "peaqos-storage";
/// Version of that transport.
pub const TRANSPORT_VERSION: &str = "1";
/// What a buyer gets: `peaq.stream.chunks.v1` chunks and `peaq.stream.buyer-access.v1` key grants.
pub const FEATURES: [&str; 2] = ["chunks.v1", "buyer-access.v1"];
/// The resource type the listings are (`POST /purchases` names `stream.listing`).
pub const RESOURCE_TYPE: &str = "stream.listing";

/// The storage provider of a destination (`local`, `s3`, `walrus`).
pub fn provider(d: &DestinationConfig) -> &'static str {
    match d {
        DestinationConfig::Local { .. } => "local",
        DestinationConfig::S3 { .. } => "s3",
        DestinationConfig::Walrus { .. } => "walrus",
    }
}

/// The listing id of `topic` when the `sale:` block names none: `lst_` + 16 hex digits of
/// keccak256(topic) (stable, path-safe, one per topic of a machine).
pub fn default_listing_id(topic: &str) -> String {
    format!("lst_{}", hex::encode(&peaqos_core::keys::keccak256(topic.as_bytes())[..8]))
}

fn rail(r: &PaymentRailConfig) -> ListingRail {
    match r {
        PaymentRailConfig::Transfer { chain, token, pay_to, token_address, .. } => ListingRail::Transfer {
            destination: TransferDestination {
                chain: chain.clone(),
                token: token.clone(),
                pay_to: pay_to.clone(),
                token_address: token_address.clone(),
            },
        },
        PaymentRailConfig::X402 { chain, token, facilitator_url } => {
            ListingRail::X402 { chain: chain.clone(), token: token.clone(), facilitator_url: facilitator_url.clone() }
        }
    }
}

/// What a payment is checked against: the price, and each transfer rail with its token's
/// decimals (errors name the key: a price finer than a token's base unit, unknown decimals).
pub fn terms(sale: &SaleConfig) -> Result<SaleTerms, String> {
    let price = Amount::parse(&sale.price, "sale.price")?;
    let mut transfer_rails = Vec::new();
    for (i, r) in sale.payment_rails.iter().enumerate() {
        let PaymentRailConfig::Transfer { chain, token, pay_to, token_address, token_decimals } = r else { continue };
        let key = format!("sale.payment_rails[{i}]");
        let decimals = token_decimals
            .or_else(|| TransferTerms::default_decimals(token, token_address.as_deref()))
            .ok_or_else(|| format!("{key}.token_decimals: required for token {token} (USDC/USDT: 6, native: 18)"))?;
        if price.in_units_of(decimals).is_none() {
            return Err(format!("sale.price: {} is finer than {token}'s base unit ({decimals} decimals)", sale.price));
        }
        transfer_rails.push(TransferTerms {
            chain: chain.clone(),
            token: token.clone(),
            pay_to: pay_to.clone(),
            token_address: token_address.clone(),
            token_decimals: decimals,
        });
    }
    Ok(SaleTerms { price, currency: sale.currency.clone(), minor_units: sale.currency_minor_units, transfer_rails })
}

/// The listing of one streamed topic for sale.
pub fn listing(topic: &str, sale: &SaleConfig, storage_provider: &str) -> Result<Listing, String> {
    let params = serde_json::json!({
        "topic": topic,
        "chunkFormat": "peaq.stream.chunks.v1",
        "storageProvider": storage_provider,
        "storageRef": "chunk-envelope",
    });
    Ok(Listing {
        terms: terms(sale)?,
        listing_id: sale.listing_id.clone().unwrap_or_else(|| default_listing_id(topic)),
        topic: topic.to_string(),
        update: ListingUpdate {
            resource: ListingResource {
                kind: "stream.topic".into(),
                mode: "storage".into(),
                supports_live: sale.supports_live,
            },
            payment_rails: sale.payment_rails.iter().map(rail).collect(),
            delivery_options: vec![DeliveryOptionInput {
                transport_id: TRANSPORT_ID.into(),
                version: TRANSPORT_VERSION.into(),
                features: FEATURES.iter().map(|f| f.to_string()).collect(),
                protocols: None,
                encoding: None,
                params: Some(params),
            }],
            price: ListingPrice { amount: sale.price.clone(), currency: sale.currency.clone() },
        },
    })
}

/// The offers of every streamed topic with a `sale:` block (`(topic, stream config)` pairs);
/// empty when none is for sale. Two topics with one listing id are an error naming both.
pub fn offers<'a>(
    topics: impl IntoIterator<Item = (&'a str, &'a TopicStreamConfig)>,
    capabilities_ttl: std::time::Duration,
) -> Result<Offers, String> {
    let mut listings: Vec<Listing> = Vec::new();
    let mut providers: Vec<&'static str> = Vec::new();
    for (topic, cfg) in topics {
        let Some(sale) = &cfg.sale else { continue };
        let p = cfg.destinations.first().map_or("local", provider);
        let l = listing(topic, sale, p).map_err(|e| format!("{topic}: {e}"))?;
        if let Some(other) = listings.iter().find(|o| o.listing_id == l.listing_id) {
            return Err(format!("topics {} and {topic} have the same sale.listing_id {}", other.topic, l.listing_id));
        }
        if !providers.contains(&p) {
            providers.push(p);
        }
        listings.push(l);
    }
    if listings.is_empty() {
        return Ok(Offers::default());
    }
    let mut features: Vec<String> = FEATURES.iter().map(|f| f.to_string()).collect();
    features.extend(providers.iter().map(|p| p.to_string()));
    Ok(Offers {
        capabilities: vec![DeliveryCapabilityInput {
            transport_id: TRANSPORT_ID.into(),
            version: TRANSPORT_VERSION.into(),
            features,
            protocols: None,
            encoding: None,
        }],
        resource_types: vec![RESOURCE_TYPE.into()],
        capabilities_ttl,
        listings,
    })
}

/// Offer the local delivery endpoint too (`market.delivery.http_listen`): one more delivery
/// capability (transport [`crate::delivery::TRANSPORT_ID`]) and one more delivery option per
/// listing, whose `params` name the endpoint's public URL.
pub fn with_http_delivery(offers: &mut Offers, public_url: &str) {
    if offers.listings.is_empty() {
        return;
    }
    let features: Vec<String> = crate::delivery::FEATURES.iter().map(|f| f.to_string()).collect();
    offers.capabilities.push(DeliveryCapabilityInput {
        transport_id: crate::delivery::TRANSPORT_ID.into(),
        version: "1".into(),
        features: features.clone(),
        protocols: Some(vec!["http/1.1".into()]),
        encoding: None,
    });
    for l in &mut offers.listings {
        l.update.delivery_options.push(DeliveryOptionInput {
            transport_id: crate::delivery::TRANSPORT_ID.into(),
            version: "1".into(),
            features: features.clone(),
            protocols: Some(vec!["http/1.1".into()]),
            encoding: None,
            params: Some(serde_json::json!({"topic": l.topic, "baseUrl": public_url, "auth": "bearer"})),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_listing_per_topic_for_sale_with_the_sdk_shapes() {
        let sale = json!({"sale": {"price": "0.5", "currency": "USDC", "payment_rails": [
            {"type": "transfer", "chain": "eip155:3338", "token": "USDC", "pay_to": "0xabc"}]}});
        let a = TopicStreamConfig::from_value(&sale).unwrap();
        let b = TopicStreamConfig::from_value(&json!({})).unwrap();
        let o = offers([("/a", &a), ("/b", &b)], std::time::Duration::from_secs(60)).unwrap();
        assert_eq!(o.listings.len(), 1);
        let l = &o.listings[0];
        assert_eq!(l.listing_id, default_listing_id("/a"));
        assert!(l.listing_id.starts_with("lst_") && l.listing_id.len() == 20);
        let body = serde_json::to_value(&l.update).unwrap();
        assert_eq!(body["resource"], json!({"type": "stream.topic", "mode": "storage", "supportsLive": true}));
        assert_eq!(
            body["paymentRails"],
            json!([{"type": "transfer", "destination": {"chain": "eip155:3338", "token": "USDC", "payTo": "0xabc"}}])
        );
        assert_eq!(body["deliveryOptions"][0]["params"]["storageProvider"], "local");
        assert_eq!(body["price"], json!({"amount": "0.5", "currency": "USDC"}));
        assert_eq!(o.capabilities[0].features, ["chunks.v1", "buyer-access.v1", "local"]);
        let dup = offers([("/a", &a), ("/a2", &a)], std::time::Duration::from_secs(60));
        assert!(dup.is_ok(), "different topics, different default ids");
        let mut same = a.clone();
        same.sale.as_mut().unwrap().listing_id = Some(default_listing_id("/a"));
        let e = offers([("/a", &a), ("/z", &same)], std::time::Duration::from_secs(60)).unwrap_err();
        assert!(e.contains("/a") && e.contains("/z"), "{e}");
        assert!(offers([("/b", &b)], std::time::Duration::from_secs(60)).unwrap().is_empty());
    }
}
