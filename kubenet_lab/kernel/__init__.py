"""The kernel lab: scenarios realised in Linux network namespaces, to check the simulator against the kernel.

:func:`~kubenet_lab.kernel.plan.plan` computes the commands (no root needed to read them);
:class:`~kubenet_lab.kernel.lab.KernelLab` runs them, probes, and verifies walks;
:mod:`~kubenet_lab.kernel.bird` writes BIRD 2's configuration for BGP-routed scenarios. Chapter 10.
"""

from .lab import Answer, KernelLab, PingResult, Verdict, missing_requirements
from .plan import Command, plan, unsupported_reason

__all__ = ["KernelLab", "Answer", "PingResult", "Verdict", "missing_requirements", "Command", "plan", "unsupported_reason"]
