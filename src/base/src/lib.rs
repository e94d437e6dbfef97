//! Foundations shared by every peaqos crate, one helper per job (ROS-free, no async, no deps
//! beyond `thiserror`). Today: [`fsio`], the one way durable state is written to disk.
pub mod fsio;
