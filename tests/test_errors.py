"""The error family: every class is a KubenetLabError and the builtin it refines; __all__ is honest."""

import kubenet_lab
from kubenet_lab import errors


def test_every_error_names_object_field_and_value():
    for name in errors.__all__:
        cls = getattr(errors, name)
        exc = cls("Node node-1", "spec.podCIDR", "10.0.0.0/33", "must be a CIDR")
        assert isinstance(exc, errors.KubenetLabError)
        assert str(exc) == "Node node-1: 'spec.podCIDR' must be a CIDR (got '10.0.0.0/33')"


def test_builtin_parents():
    assert issubclass(errors.InvalidValue, ValueError) and issubclass(errors.AlreadyExists, ValueError)
    assert issubclass(errors.NotFound, KeyError) and issubclass(errors.NotAllocated, KeyError)
    assert issubclass(errors.Exhausted, RuntimeError)
    assert issubclass(errors.ScenarioError, errors.InvalidValue) and issubclass(errors.Overlap, errors.InvalidValue)


def test_upstream_text_is_appended():
    exc = errors.Exhausted("HostLocal 10.0.0.0/30", "subnet", "10.0.0.0/30", "has no free address",
                           upstream="no IP addresses available in range set: 10.0.0.1-10.0.0.2")
    assert str(exc).endswith("[no IP addresses available in range set: 10.0.0.1-10.0.0.2]")


def test_public_names_exist():
    for module in (kubenet_lab, errors):
        for name in module.__all__:
            assert hasattr(module, name), name
