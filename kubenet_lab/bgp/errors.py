"""NOTIFICATION error codes and the one exception a BGP decoder raises.

When a BGP speaker finds an error in what its peer sent, RFC 4271 §6 tells it
exactly which NOTIFICATION to send before closing the TCP connection: an
*Error Code* naming the kind of message that was wrong and an *Error Subcode*
naming the field, plus a *Data* field that usually quotes the offending bytes
(RFC 4271 §4.5). BIRD logs them as ``Received: Malformed AS_PATH``, FRR as
``UPDATE Message Error/Malformed AS_PATH``; here they are
:class:`ErrorCode` and one subcode enum per code.

RFC 7606 softened the UPDATE rules. A speaker that meets a bad path attribute
no longer always resets the session; it takes one of three *approaches*
(:class:`Approach`), strongest first:

* **session reset** - send the NOTIFICATION and close: every route learnt on
  the session is lost. Still used when the NLRI cannot be located reliably.
* **treat-as-withdraw** - keep the session, but handle the UPDATE as if all its
  prefixes had been withdrawn (an attribute that takes part in route selection
  was broken, so the route cannot be trusted).
* **attribute discard** - drop just that attribute and carry on (only for
  attributes with no say in route selection, such as AGGREGATOR).

:class:`BGPMessageError` is raised for the first approach only; the other two
are not exceptions but reports on the decoded UPDATE (see
:class:`kubenet_lab.bgp.attributes.MalformedAttribute`). It extends the
:mod:`kubenet_lab.errors` tree::

    KubenetLabError
     └── InvalidValue        (ValueError)
          └── BGPMessageError               the peer must be sent NOTIFICATION code/subcode

>>> from kubenet_lab.bgp import decode
>>> decode(bytes(16) + bytes([0, 19, 4]))
Traceback (most recent call last):
...
kubenet_lab.bgp.errors.BGPMessageError: BGP message header: 'Marker' must be 16 octets of all ones (got '00000000000000000000000000000000') [NOTIFICATION 1/1 Message Header Error / Connection Not Synchronized]
"""

from __future__ import annotations

from enum import Enum, IntEnum

from ..errors import InvalidValue

__all__ = [
    "ErrorCode",
    "HeaderSubcode",
    "OpenSubcode",
    "UpdateSubcode",
    "FSMSubcode",
    "CeaseSubcode",
    "RouteRefreshSubcode",
    "SUBCODES",
    "Approach",
    "BGPMessageError",
    "error_name",
]


class _Code(IntEnum):
    """An IntEnum whose repr pastes back into a cell (``ErrorCode.CEASE``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class ErrorCode(_Code):
    """NOTIFICATION Error Code, RFC 4271 §4.5 (7 added by RFC 7313 §5)."""

    MESSAGE_HEADER_ERROR = 1
    OPEN_MESSAGE_ERROR = 2
    UPDATE_MESSAGE_ERROR = 3
    HOLD_TIMER_EXPIRED = 4
    FINITE_STATE_MACHINE_ERROR = 5
    CEASE = 6
    ROUTE_REFRESH_MESSAGE_ERROR = 7


class HeaderSubcode(_Code):
    """Message Header Error subcodes, RFC 4271 §4.5 and §6.1."""

    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(_Code):
    """OPEN Message Error subcodes, RFC 4271 §4.5 and §6.2 (5, Authentication
    Failure, is deprecated; 7 is RFC 5492 §5)."""

    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7


class UpdateSubcode(_Code):
    """UPDATE Message Error subcodes, RFC 4271 §4.5 and §6.3 (7, AS Routing
    Loop, is deprecated)."""

    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FSMSubcode(_Code):
    """Finite State Machine Error subcodes, RFC 6608 §3."""

    RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE = 1
    RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE = 2
    RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE = 3


class CeaseSubcode(_Code):
    """Cease subcodes, RFC 4486 §4 (9, Hard Reset, is RFC 8538 §5)."""

    MAXIMUM_NUMBER_OF_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DE_CONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9


class RouteRefreshSubcode(_Code):
    """ROUTE-REFRESH Message Error subcodes, RFC 7313 §5."""

    INVALID_MESSAGE_LENGTH = 1


#: The subcode enum of each Error Code; Hold Timer Expired has none (its subcode is 0).
SUBCODES: dict[ErrorCode, type[_Code]] = {
    ErrorCode.MESSAGE_HEADER_ERROR: HeaderSubcode,
    ErrorCode.OPEN_MESSAGE_ERROR: OpenSubcode,
    ErrorCode.UPDATE_MESSAGE_ERROR: UpdateSubcode,
    ErrorCode.FINITE_STATE_MACHINE_ERROR: FSMSubcode,
    ErrorCode.CEASE: CeaseSubcode,
    ErrorCode.ROUTE_REFRESH_MESSAGE_ERROR: RouteRefreshSubcode,
}

# The RFC's own capitalisation, which is what BIRD, FRR and Wireshark print.
_CODE_NAMES = {
    ErrorCode.MESSAGE_HEADER_ERROR: "Message Header Error",
    ErrorCode.OPEN_MESSAGE_ERROR: "OPEN Message Error",
    ErrorCode.UPDATE_MESSAGE_ERROR: "UPDATE Message Error",
    ErrorCode.HOLD_TIMER_EXPIRED: "Hold Timer Expired",
    ErrorCode.FINITE_STATE_MACHINE_ERROR: "Finite State Machine Error",
    ErrorCode.CEASE: "Cease",
    ErrorCode.ROUTE_REFRESH_MESSAGE_ERROR: "ROUTE-REFRESH Message Error",
}
# Keyed by enum class first: IntEnum members of different classes with equal values compare equal.
_SUBCODE_NAMES: dict[type[_Code], dict[int, str]] = {
    HeaderSubcode: {
        HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED: "Connection Not Synchronized",
        HeaderSubcode.BAD_MESSAGE_LENGTH: "Bad Message Length",
        HeaderSubcode.BAD_MESSAGE_TYPE: "Bad Message Type",
    },
    OpenSubcode: {
        OpenSubcode.UNSUPPORTED_VERSION_NUMBER: "Unsupported Version Number",
        OpenSubcode.BAD_PEER_AS: "Bad Peer AS",
        OpenSubcode.BAD_BGP_IDENTIFIER: "Bad BGP Identifier",
        OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER: "Unsupported Optional Parameter",
        OpenSubcode.UNACCEPTABLE_HOLD_TIME: "Unacceptable Hold Time",
        OpenSubcode.UNSUPPORTED_CAPABILITY: "Unsupported Capability",
    },
    UpdateSubcode: {
        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST: "Malformed Attribute List",
        UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: "Unrecognized Well-known Attribute",
        UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE: "Missing Well-known Attribute",
        UpdateSubcode.ATTRIBUTE_FLAGS_ERROR: "Attribute Flags Error",
        UpdateSubcode.ATTRIBUTE_LENGTH_ERROR: "Attribute Length Error",
        UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE: "Invalid ORIGIN Attribute",
        UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE: "Invalid NEXT_HOP Attribute",
        UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR: "Optional Attribute Error",
        UpdateSubcode.INVALID_NETWORK_FIELD: "Invalid Network Field",
        UpdateSubcode.MALFORMED_AS_PATH: "Malformed AS_PATH",
    },
    FSMSubcode: {
        FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE: "Receive Unexpected Message in OpenSent State",
        FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE: "Receive Unexpected Message in OpenConfirm State",
        FSMSubcode.RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE: "Receive Unexpected Message in Established State",
    },
    CeaseSubcode: {
        CeaseSubcode.MAXIMUM_NUMBER_OF_PREFIXES_REACHED: "Maximum Number of Prefixes Reached",
        CeaseSubcode.ADMINISTRATIVE_SHUTDOWN: "Administrative Shutdown",
        CeaseSubcode.PEER_DE_CONFIGURED: "Peer De-configured",
        CeaseSubcode.ADMINISTRATIVE_RESET: "Administrative Reset",
        CeaseSubcode.CONNECTION_REJECTED: "Connection Rejected",
        CeaseSubcode.OTHER_CONFIGURATION_CHANGE: "Other Configuration Change",
        CeaseSubcode.CONNECTION_COLLISION_RESOLUTION: "Connection Collision Resolution",
        CeaseSubcode.OUT_OF_RESOURCES: "Out of Resources",
        CeaseSubcode.HARD_RESET: "Hard Reset",
    },
    RouteRefreshSubcode: {
        RouteRefreshSubcode.INVALID_MESSAGE_LENGTH: "Invalid Message Length",
    },
}


def error_name(code: int, subcode: int) -> str:
    """The RFC's name for an Error Code / Subcode pair, as routers log it.

    Subcode 0 is "Unspecific" for every code (RFC 4271 §4.5: "If no
    appropriate Error Subcode is defined, then a zero (Unspecific) value is
    used"). Unknown values are shown as numbers, never rejected: RFC 4271 §6.4
    says a bad NOTIFICATION can only be logged.

    >>> error_name(3, 11)
    'UPDATE Message Error / Malformed AS_PATH'
    >>> error_name(6, 2)
    'Cease / Administrative Shutdown'
    >>> error_name(2, 0), error_name(42, 1)
    ('OPEN Message Error / Unspecific', 'Error Code 42 / Subcode 1')
    """
    try:
        error_code = ErrorCode(code)
    except ValueError:
        return f"Error Code {code} / Subcode {subcode}"
    if subcode == 0:
        return f"{_CODE_NAMES[error_code]} / Unspecific"
    enum = SUBCODES.get(error_code)
    name = _SUBCODE_NAMES[enum].get(subcode) if enum else None
    return f"{_CODE_NAMES[error_code]} / {name or f'Subcode {subcode}'}"


class Approach(Enum):
    """RFC 7606 §2 error-handling approaches, strongest first.

    ("AFI/SAFI disable", RFC 4760 §7, is allowed wherever session reset is;
    kubenet_lab always chooses session reset, as BIRD and FRR do.)
    """

    SESSION_RESET = "session reset"
    TREAT_AS_WITHDRAW = "treat-as-withdraw"
    ATTRIBUTE_DISCARD = "attribute discard"

    def __repr__(self) -> str:
        return f"Approach.{self.name}"


class BGPMessageError(InvalidValue):
    """A message from the peer that must be answered with a NOTIFICATION (session reset).

    Attributes beyond :class:`~kubenet_lab.errors.KubenetLabError`'s:
        code: the NOTIFICATION Error Code (RFC 4271 §4.5).
        subcode: the Error Subcode.
        data: the Data field RFC 4271 §6 prescribes for this error (often the
            offending bytes; empty where the RFC asks for none).

    >>> err = BGPMessageError("OPEN message", "Hold Time", 2, "must be 0 or at least 3 seconds",
    ...                       code=2, subcode=6)
    >>> err.notification()
    Notification(code=2, subcode=6, data=b'')
    >>> print(err)
    OPEN message: 'Hold Time' must be 0 or at least 3 seconds (got 2) [NOTIFICATION 2/6 OPEN Message Error / Unacceptable Hold Time]
    """

    def __init__(self, obj: str, field: str, value: object, expected: str, *,
                 code: int, subcode: int, data: bytes = b""):
        super().__init__(obj, field, value, expected,
                         upstream=f"NOTIFICATION {code}/{subcode} {error_name(code, subcode)}")
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)

    @property
    def approach(self) -> Approach:
        """Always :attr:`Approach.SESSION_RESET`: lesser errors are reported, not raised."""
        return Approach.SESSION_RESET

    def notification(self):
        """The NOTIFICATION message the receiver sends before closing (RFC 4271 §6)."""
        from .messages import Notification

        return Notification(int(self.code), int(self.subcode), self.data)
