//! The MCR API: `~/query_mcr`, `~/query_machine`, `~/query_operator_machines`.
use ros_env::peaqos_node::srv::*;

use super::Registrar;
use crate::StartError;

pub(super) fn register(reg: &mut Registrar) -> Result<(), StartError> {
    service!(reg, "~/query_mcr", QueryMcr, |c, req| {
        let v = c.mcr()?.query_mcr(&req.did).await?;
        Ok(QueryMcr_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });
    service!(reg, "~/query_machine", QueryMachine, |c, req| {
        let v = c.mcr()?.query_machine(&req.did).await?;
        Ok(QueryMachine_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });
    service!(reg, "~/query_operator_machines", QueryOperatorMachines, |c, req| {
        let v = c.mcr()?.query_operator_machines(&req.did).await?;
        Ok(QueryOperatorMachines_Response { success: true, result_json: v.to_string(), ..Default::default() })
    });
    Ok(())
}
