//! How every service of the node answers a refusal: `success: false`, the code in
//! `error_code` (the SDK's for chain calls, the stream crate's for grants and datasets, the
//! market's for orders), the request field it is about in `error_field` (spelled as in the
//! `.srv` or `.action`) and a message. The chain services ([`crate::chain`]), the stream services
//! ([`crate::stream`]) and the `~/market_order` action's results ([`crate::market`]) build their
//! failed answers only through [`Refuse::refused`].
use peaqos_chain::ChainError;
use peaqos_events::anchor::AnchorError;
use peaqos_market::MarketError;
use peaqos_stream::{ErrorCode, StreamError};
use ros_env::peaqos_node::action::{BridgeNft_Result, MarketOrder_Result};
use ros_env::peaqos_node::srv::*;

/// A refused request: its code, the request field it names (empty: none) and the message.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: String,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl Refusal {
    /// A refusal the node makes itself (a stream service's own check).
    pub(crate) fn new(code: ErrorCode, field: &str, message: impl Into<String>) -> Refusal {
        Refusal { code: code.as_str().to_owned(), field: field.into(), message: message.into() }
    }

    /// A chain client's error, about the request field `field`.
    pub(crate) fn chain(e: &ChainError, field: String) -> Refusal {
        Refusal { code: e.error_code().as_str().to_owned(), field, message: e.to_string() }
    }

    /// A failure of the node itself (a task that died), named `INTERNAL` as the services do.
    pub(crate) fn internal(message: impl Into<String>) -> Refusal {
        Refusal { code: "INTERNAL".to_owned(), field: String::new(), message: message.into() }
    }
}

impl From<StreamError> for Refusal {
    fn from(e: StreamError) -> Self {
        Refusal { code: e.code().to_owned(), field: e.field().to_owned(), message: e.to_string() }
    }
}

impl From<AnchorError> for Refusal {
    fn from(e: AnchorError) -> Self {
        Refusal { code: e.code().to_owned(), field: e.field().to_owned(), message: e.to_string() }
    }
}

impl From<&MarketError> for Refusal {
    fn from(e: &MarketError) -> Self {
        Refusal { code: e.error_code().to_owned(), field: e.field().to_owned(), message: e.to_string() }
    }
}

/// A service response that can carry a refusal.
pub(crate) trait Refuse {
    /// This response marked failed with `r`'s code, field and message (its other fields kept).
    fn refused(self, r: Refusal) -> Self;

    /// The outbox intent and transaction a failure is about, for the responses that report
    /// them (a receipt wait that timed out leaves the intent queued and tracked); the others
    /// ignore it.
    fn with_intent(self, _intent_id: String, _tx_hash: String) -> Self
    where
        Self: Sized,
    {
        self
    }

    /// The Gas Station request id a failure is about, for the response that reports it.
    fn with_request(self, _request_id: String) -> Self
    where
        Self: Sized,
    {
        self
    }
}

impl Refuse for FundFromGasStation_Response {
    fn refused(self, r: Refusal) -> Self {
        Self { success: false, error_code: r.code.to_owned(), error_field: r.field, message: r.message, ..self }
    }
    fn with_request(self, request_id: String) -> Self {
        Self { request_id, ..self }
    }
}

macro_rules! impl_refuse {
    ($(intent: $i:ty),* ; $($t:ty),* $(,)?) => {
        $(impl Refuse for $i {
            fn refused(self, r: Refusal) -> Self {
                Self { success: false, error_code: r.code, error_field: r.field, message: r.message, ..self }
            }
            fn with_intent(self, intent_id: String, tx_hash: String) -> Self {
                Self { intent_id, tx_hash, ..self }
            }
        })*
        $(impl Refuse for $t {
            fn refused(self, r: Refusal) -> Self {
                Self { success: false, error_code: r.code, error_field: r.field, message: r.message, ..self }
            }
        })*
    };
}

impl_refuse!(
    intent: SubmitEvent_Response,
    intent: BatchSubmitEvents_Response,
    intent: DeploySmartAccount_Response;
    SmartAccountAddress_Response,
    ValidateEvent_Response,
    Activate_Response,
    Register_Response,
    RegisterFor_Response,
    MintNft_Response,
    TokenIdOf_Response,
    WriteMachineDidAttributes_Response,
    WriteProxyDidAttributes_Response,
    ReadDidAttribute_Response,
    QueryMcr_Response,
    QueryMachine_Response,
    QueryOperatorMachines_Response,
    GrantAccess_Response,
    SealDataset_Response,
    MarketOrder_Result,
    BridgeNft_Result,
    MarketSearch_Response,
    MarketOrderStatus_Response,
    MarketOrderReceived_Response,
    MarketOrderDispute_Response,
);
