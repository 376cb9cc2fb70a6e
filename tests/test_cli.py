"""The kubenet-lab command: tables on stdout, one-line errors with exit status 2."""

import subprocess
import sys
from pathlib import Path

import pytest

from kubenet_lab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_show_prints_the_tables(capsys):
    assert main(["show", str(ROOT / "scenarios/three-node-vxlan.yaml")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("Scenario three-node-vxlan: pods 10.244.0.0/16, services 10.96.0.0/12, cni flannel-vxlan")
    assert "node-2  192.168.0.12  10.244.1.0/24" in out
    assert any(l.split()[:4] == ["default", "web-2", "10.244.1.2", "node-2"] for l in lines)
    assert any(l.split()[1:3] == ["web-nodeport", "NodePort"] and "80:30080/TCP" in l for l in lines)


def test_bad_scenario_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kubenet-lab.io/v1alpha1\nkind: ClusterNetwork\nspec: {podCIDRs: [10.244.0.0/33], serviceCIDRs: [10.96.0.0/12]}\n")
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("kubenet-lab: error: ClusterNetwork: 'podCIDRs'") and "10.244.0.0/33" in err


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "kubenet_lab.cli", "show", str(ROOT / "scenarios/dual-stack.yaml")],
                            capture_output=True, text=True, check=True)
    assert "fd00:10:244::/64" in result.stdout


@pytest.mark.parametrize("argv", [[], ["show"], ["frobnicate"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_proxy_rules_prints_iptables_restore_input_for_a_node(capsys):
    assert main(["proxy-rules", str(ROOT / "scenarios/three-node-vxlan.yaml"), "--node", "node-2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("*filter\n") and out.count("COMMIT\n") == 2 and "*nat\n" in out
    # the NodePort Service opens 30080 through KUBE-NODEPORTS on every node
    assert "--dport 30080 -j KUBE-EXT-" in out


@pytest.mark.parametrize("argv, words", [
    (["--ipvs-scheduler", "lc"], "--ipvs-scheduler"),
    (["--nodeport-addresses", "10.0.0.0/33"], "10.0.0.0/33"),
    (["--iptables-masquerade-bit", "40"], "masquerade_bit"),
    (["--node-ip", "banana"], "banana"),
])
def test_proxy_rules_bad_flags_exit_2_and_print_nothing(argv, words, capsys):
    code = main(["proxy-rules", str(ROOT / "scenarios/three-node-vxlan.yaml"), "--node", "node-1", *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and words in captured.err


def test_proxy_rules_nftables_mode_prints_an_nft_transaction(capsys):
    assert main(["proxy-rules", str(ROOT / "scenarios/dual-stack.yaml"), "--node", "node-1", "--proxy-mode", "nftables"]) == 0
    out = capsys.readouterr().out
    assert "add table ip kube-proxy" in out and "add table ip6 kube-proxy" in out
