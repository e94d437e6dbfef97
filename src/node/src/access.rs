//! Least privilege on the ROS graph. Every service that spends, writes identity, grants data or
//! changes market state (`~/market_onboard`) can be switched off with the `services.disabled` parameter; a service
//! that is off is never created, so it is not even advertised (`ros2 service list` does not show
//! it). `config/peaqos_node.production.yaml` switches off every privileged one, and
//! `config/sros2/policy.xml` names the client nodes allowed to call them where SROS2 is used.
use std::collections::HashSet;

use crate::params::{param_err, ParamSet};
use crate::StartError;

/// Services that spend (the bond, gas), write identity, or give data away.
pub const PRIVILEGED: &[&str] = &[
    "activate",
    "register",
    "register_for",
    "mint_nft",
    "write_machine_did_attributes",
    "write_proxy_did_attributes",
    "submit_event",
    "batch_submit_events",
    "grant_access",
    "seal_dataset",
    "market_onboard",
    "fund_from_gas_station",
    "deploy_smart_account",
];

/// Actions that spend or move property (`~/bridge_nft`: the LayerZero fee, the Machine NFT);
/// switched off by `services.disabled` like the services.
pub const PRIVILEGED_ACTIONS: &[&str] = &["bridge_nft"];

/// Services that only read or validate (`~/status` cannot be switched off).
pub const UNPRIVILEGED: &[&str] = &[
    "validate_event",
    "token_id_of",
    "read_did_attribute",
    "query_mcr",
    "query_machine",
    "query_operator_machines",
    "smart_account_address",
];

/// Which of the node's services exist.
#[derive(Debug, Clone, Default)]
pub struct Services {
    disabled: HashSet<String>,
}

impl Services {
    /// Declare `services.disabled` (read-only): service names without `~/`.
    pub fn declare(params: &ParamSet) -> Result<Services, StartError> {
        let names = params.read_only_strings(
            "services.disabled",
            &[],
            "Services not to create at all (not advertised), e.g. [activate, grant_access]; see config/peaqos_node.production.yaml.",
        )?;
        let mut disabled = HashSet::new();
        for n in names {
            let n = n.trim().trim_start_matches("~/").to_owned();
            let known = [PRIVILEGED, PRIVILEGED_ACTIONS, UNPRIVILEGED];
            if !known.iter().any(|l| l.contains(&n.as_str())) {
                return Err(param_err(
                    "services.disabled",
                    format!("unknown service {n:?}: one of {}", known.concat().join(", ")),
                ));
            }
            disabled.insert(n);
        }
        if !disabled.is_empty() {
            let mut v: Vec<&str> = disabled.iter().map(String::as_str).collect();
            v.sort_unstable();
            tracing::info!("services switched off (not advertised): {}", v.join(", "));
        }
        Ok(Services { disabled })
    }

    /// Whether the service `~/name` (or `name`) is to be created.
    pub fn enabled(&self, name: &str) -> bool {
        !self.disabled.contains(name.trim_start_matches("~/"))
    }
}
