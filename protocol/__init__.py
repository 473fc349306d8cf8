"""The wire contract shared by the gate agent, the console and the simulator.

Everything that crosses MQTT is defined here and nowhere else: topic names, the event
envelope, commands and their responses, console acknowledgements and the retained gate
status.  Each side imports these models; none of them builds a topic string or a JSON
document by hand, so a change to the contract is a change to this package alone.
"""

from protocol.errors import GatepostError, ProtocolError, RejectReason
from protocol.messages import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    CommandResponse,
    ConsoleStatus,
    Event,
    GateHealth,
    GateState,
    GateStatus,
    decode_ack,
    decode_command,
    decode_console_status,
    decode_event,
    decode_health,
    decode_response,
    decode_status,
    encode,
    seq_ranges,
)
from protocol.topics import GateTopics, TopicKind, TopicRef, parse_topic, validate_name

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "Command",
    "CommandResponse",
    "ConsoleStatus",
    "Event",
    "GateHealth",
    "GateState",
    "GateStatus",
    "GateTopics",
    "GatepostError",
    "ProtocolError",
    "RejectReason",
    "TopicKind",
    "TopicRef",
    "decode_ack",
    "decode_command",
    "decode_console_status",
    "decode_event",
    "decode_health",
    "decode_response",
    "decode_status",
    "encode",
    "parse_topic",
    "seq_ranges",
    "validate_name",
]
