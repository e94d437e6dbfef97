use rclrs::*;
use ros_env::peaqos_node::msg::DataPackage;
fn main() -> Result<(), RclrsError> {
    let context = Context::default_from_env()?;
    let mut executor = context.create_basic_executor();
    let node = executor.create_node("peaqos_node")?;
    let publisher = node.create_publisher::<DataPackage>("~/data_packages")?;
    let _sub = node.create_dynamic_subscription(
        "std_msgs/msg/String".try_into().unwrap(),
        "chatter",
        move |msg: DynamicMessage, _info: MessageInfo| {
            println!("got {:?}", msg.get("data"));
            let _ = publisher.publish(DataPackage { topic: "chatter".into(), sequence_number: 1, package_json: "{}".into() });
        },
    )?;
    executor.spin(SpinOptions::default()).first_error()
}
