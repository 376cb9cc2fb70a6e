"""Differential tests: seeded random scenarios, every sampled probe answered by the model and the kernel.

Each seed builds a random cluster (kubenet_lab.kernel.check.random_cluster: 2-5 nodes, racks or
not, 1-4 pods per node, Services with and without endpoints, NodePorts, externalTrafficPolicy
Local, each CNI the lab can build, kube-proxy in iptables mode for even seeds and nftables mode for
odd ones), realises it in network namespaces with kube-proxy's rules,
and requires every sampled probe to agree. A failure names its seed; reproduce it with
`random_cluster(seed)` and `run_check(..., sample=SAMPLE, seed=seed)`.
"""

import pytest

from kubenet_lab.kernel import missing_requirements
from kubenet_lab.kernel.check import LAB_CNIS, probes, random_cluster, run_check

SEEDS = range(50)
SAMPLE = 6
REASON = missing_requirements()


def test_random_scenarios_are_reproducible_and_cover_every_lab_cni():
    assert [str(random_cluster(s)) for s in range(3)] == [str(random_cluster(s)) for s in range(3)]
    assert {random_cluster(s).network.cni for s in SEEDS} == set(LAB_CNIS)
    # kube-proxy's rules loaded with iptables-restore and with nft -f, each with every CNI
    modes = {(random_cluster(s).network.kube_proxy_mode, random_cluster(s).network.cni) for s in SEEDS}
    assert modes == {(m, c) for m in ("iptables", "nftables") for c in LAB_CNIS}
    assert all(any(p.kind == "service" for p in probes(random_cluster(s))) for s in SEEDS)


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_agrees_on_random_scenario(seed):
    lines: list[str] = []
    total, agree = run_check(random_cluster(seed), report=lines.append, sample=SAMPLE, seed=seed)
    disagreements = [line for line in lines if "DISAGREE" in line]
    assert agree == total, f"seed {seed}: {len(disagreements)} of {total} probes disagree:\n" + "\n".join(disagreements)
