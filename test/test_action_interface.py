"""The package's actions reach Python: rclpy imports `peaqos_node.action.MarketOrder` from the
install, with the fields of action/MarketOrder.action, and its messages go through the C type
support (serialized and read back)."""
from __future__ import annotations

import re

from peaqos_harness import ROOT

from rclpy.serialization import deserialize_message, serialize_message

from peaqos_node.action import MarketOrder


def _fields(part: str) -> list[str]:
    """The field names of one part (0 goal, 1 result, 2 feedback) of MarketOrder.action."""
    text = (ROOT / "action" / "MarketOrder.action").read_text()
    section = text.split("\n---\n")[["goal", "result", "feedback"].index(part)]
    return [m.group(1) for m in re.finditer(r"^\s*[a-z][\w/\[\]<=]*\s+(\w+)", section, flags=re.M)]


def test_rclpy_imports_market_order_with_the_action_files_fields():
    for part, cls in (("goal", MarketOrder.Goal), ("result", MarketOrder.Result), ("feedback", MarketOrder.Feedback)):
        assert list(cls.get_fields_and_field_types()) == _fields(part), part
    # The implicit services and the feedback message of an action.
    assert MarketOrder.Impl.SendGoalService.Request.get_fields_and_field_types() == {
        "goal_id": "unique_identifier_msgs/UUID", "goal": "peaqos_node/MarketOrder_Goal"}
    assert "result" in MarketOrder.Impl.GetResultService.Response.get_fields_and_field_types()
    assert "feedback" in MarketOrder.Impl.FeedbackMessage.get_fields_and_field_types()


def test_market_order_messages_round_trip_through_the_type_support():
    goal = MarketOrder.Goal(service_type="inference", operation="detect", input_json='{"a":1}', budget="2.5",
                            currency="USDT", client_key="k-1")
    assert deserialize_message(serialize_message(goal), MarketOrder.Goal) == goal
    result = MarketOrder.Result(success=True, order_key="ord-1", state="executed", amount="2.5", currency="USDT")
    assert deserialize_message(serialize_message(result), MarketOrder.Result) == result
