//! Policy QoS settings → rclrs QoS profiles.
use peaqos_core::policy::{Durability, Qos, Reliability};
use rclrs::QoSProfile;

pub fn profile(q: &Qos) -> QoSProfile {
    match q {
        Qos::SensorData => QoSProfile::sensor_data_default(),
        Qos::Reliable => QoSProfile::topics_default().reliable(),
        Qos::SystemDefault => QoSProfile::system_default(),
        Qos::Custom(c) => {
            let p = QoSProfile::topics_default().keep_last(u32::try_from(c.depth).unwrap_or(u32::MAX));
            let p = match c.reliability {
                Reliability::Reliable => p.reliable(),
                Reliability::BestEffort => p.best_effort(),
            };
            match c.durability {
                Durability::Volatile => p.volatile(),
                Durability::TransientLocal => p.transient_local(),
            }
        }
    }
}
