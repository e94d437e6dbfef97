//! Machine Markets, buyer side: the robot buys services through its paired agent, within the
//! delegation policy's limits, paying on chain exactly once (issue 16).
pub mod desk;
pub mod driver;
pub mod pairing;
pub mod pay;
pub mod policy;
pub mod record;
mod steps;

pub use desk::{OrderDesk, OrderGoal, OrderProgress, OrderResult, Step};
pub use driver::{Buyer, BuyerConfig, BuyerParts};
pub use pairing::PairingConfig;
pub use policy::DelegationPolicy;
pub use record::{OrderRecord, OrderState};
