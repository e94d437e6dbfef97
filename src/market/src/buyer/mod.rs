//! Machine Markets, buyer side: the robot buys services through its paired agent, within the
//! delegation policy's limits, paying on chain exactly once (issue 16).
pub mod desk;

pub use desk::{OrderDesk, OrderGoal, OrderProgress, OrderResult, Step};
