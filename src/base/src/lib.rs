//! Foundations shared by every peaqos crate, one helper per job (ROS-free, no async, no deps
//! beyond `thiserror`): [`fsio`], the one way durable state is written to disk; [`json`], the
//! one JSON string escaper; [`layout`], every path under the node's `data_dir`.
pub mod fsio;
pub mod json;
pub mod layout;
