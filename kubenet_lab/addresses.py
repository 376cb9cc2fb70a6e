"""Parsing of addresses and CIDRs into :mod:`ipaddress` values, with kubenet_lab errors.

Every place that accepts an address or a CIDR from a user (a notebook cell, a
scenario file, the CLI) goes through these functions, so a typo always gives
the same clear :class:`~kubenet_lab.errors.InvalidValue` naming the object and
field, never a bare ``ipaddress`` traceback.

>>> parse_network("10.244.0.0/16", obj="Cluster", field="pod_cidr")
IPv4Network('10.244.0.0/16')
>>> parse_network("10.244.0.1/16", obj="Cluster", field="pod_cidr")
Traceback (most recent call last):
...
kubenet_lab.errors.InvalidValue: Cluster: 'pod_cidr' must be a network address without host bits set, e.g. '10.244.0.0/16' (got '10.244.0.1/16')
>>> parse_network("10.244.0.1/16", obj="Cluster", field="pod_cidr", strict=False)
IPv4Network('10.244.0.0/16')
>>> parse_address("fd00::1", obj="Node node-1", field="ip")
IPv6Address('fd00::1')
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from .errors import InvalidValue

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

__all__ = ["IPAddress", "IPNetwork", "parse_address", "parse_network", "parse_port", "family_name"]


def parse_address(value: object, *, obj: str, field: str) -> IPAddress:
    """Return ``value`` as an IPv4Address or IPv6Address, or raise InvalidValue."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    try:
        return ipaddress.ip_address(str(value).strip() if isinstance(value, str) else value)
    except ValueError:
        raise InvalidValue(obj, field, value, "must be an IPv4 or IPv6 address") from None


def parse_network(value: object, *, obj: str, field: str, strict: bool = True) -> IPNetwork:
    """Return ``value`` as an IPv4Network or IPv6Network, or raise InvalidValue.

    With ``strict=False`` host bits are masked off, as kube-controller-manager
    does with ``--cluster-cidr`` (``10.10.0.1/16`` means ``10.10.0.0/16``).
    """
    if isinstance(value, (IPv4Network, IPv6Network)):
        return value
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or "/" not in text:
        raise InvalidValue(obj, field, value, "must be a CIDR such as '10.244.0.0/16' or 'fd00:10:244::/56'")
    try:
        return ipaddress.ip_network(text, strict=strict)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidValue(obj, field, value, "must be a CIDR such as '10.244.0.0/16' or 'fd00:10:244::/56'") from None
    raise InvalidValue(obj, field, value, f"must be a network address without host bits set, e.g. '{loose}'")


def parse_port(value: object, *, obj: str, field: str) -> int:
    """Return ``value`` if it is a TCP/UDP port number (1-65535), or raise InvalidValue.

    >>> parse_port(8080, obj="Service web", field="spec.ports[0].port")
    8080
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidValue(obj, field, value, "must be a port number from 1 to 65535")
    return value


def family_name(version: int) -> str:
    """``4`` -> ``'IPv4'``, ``6`` -> ``'IPv6'`` (Kubernetes' ipFamilies spelling)."""
    return f"IPv{version}"
