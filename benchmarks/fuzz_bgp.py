"""Fuzz the BGP decoder: 100,000 random and mutated messages, bounded in time.

A script, not a test: ``python3 benchmarks/fuzz_bgp.py [--inputs N] [--seconds S] [--seed N]``.
It starts from valid encodings of every message kind (OPEN, UPDATE with every
attribute, IPv6 MP_REACH/MP_UNREACH, End-of-RIB, NOTIFICATION, KEEPALIVE,
ROUTE-REFRESH), then flips bits, inserts, deletes and truncates bytes, writes
random Length fields and random length octets into the body, splices two
messages, or feeds plain random bytes behind a valid marker. Each input is
decoded both as from a 4-octet-AS peer and as from a 2-octet one.

The contract checked for every input (issue 4, §5):

* only :mod:`kubenet_lab.errors` types escape :func:`kubenet_lab.bgp.decode`;
* every :class:`~kubenet_lab.bgp.BGPMessageError` carries an Error Code /
  Subcode pair that RFC 4271 §6 (or RFC 7313 §5) defines;
* a message that decodes without RFC 7606 reports re-encodes and decodes to
  itself (decoding canonicalises).

It stops after ``--inputs`` inputs or ``--seconds`` seconds, whichever comes
first, prints one row per outcome and exits with status 1 if any input broke
the contract (the first few are printed as hex, ready for a regression test).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubenet_lab.bgp import (  # noqa: E402
    AFI,
    NO_EXPORT,
    SAFI,
    Aggregator,
    ASPath,
    AtomicAggregate,
    BGPMessageError,
    ClusterList,
    Communities,
    Keepalive,
    LocalPref,
    MPReachNLRI,
    MPUnreachNLRI,
    MultiExitDisc,
    NextHop,
    Notification,
    Open,
    Origin,
    OriginatorID,
    RouteRefresh,
    UnknownAttribute,
    UnknownCapability,
    Update,
    decode,
    end_of_rib,
    split_messages,
)
from kubenet_lab.bgp.errors import HeaderSubcode, OpenSubcode, UpdateSubcode, error_name  # noqa: E402
from kubenet_lab.errors import KubenetLabError  # noqa: E402

INPUTS = 100_000
SECONDS = 120.0

VALID_ERRORS = ({(1, int(s)) for s in HeaderSubcode} | {(2, 0)} | {(2, int(s)) for s in OpenSubcode}
                | {(3, int(s)) for s in UpdateSubcode} | {(7, 1)})


def seeds() -> list[bytes]:
    """Valid messages of every kind, each attribute at least once."""
    full = (Origin(0), ASPath("64512 4200000000 {65010,65011}"), NextHop("192.168.0.12"), MultiExitDisc(10),
            LocalPref(100), AtomicAggregate(), Aggregator(4200000000, "192.168.0.1"),
            Communities(["64512:100", NO_EXPORT]), OriginatorID("192.168.0.12"), ClusterList(["192.168.0.1"]),
            UnknownAttribute(0xC0, 32, bytes(12)))
    v6 = MPReachNLRI(AFI.IPV6, SAFI.UNICAST, ("fd00::12", "fe80::1"), ["fd00:10:244:1::/64", "fd00:10:244::/56"])
    updates = [
        Update(attributes=full, nlri=["10.244.1.0/24", "10.244.2.0/26"], withdrawn=["10.244.9.0/24"]),
        Update(attributes=(v6, Origin(0), ASPath([64512]))),
        Update(attributes=(MPUnreachNLRI(AFI.IPV6, SAFI.UNICAST, ["fd00:10:244:1::/64"]),)),
        Update(withdrawn=["10.244.1.0/24", "0.0.0.0/0"]),
        end_of_rib(), end_of_rib(AFI.IPV6),
    ]
    messages = [u.encode() for u in updates] + [u.encode(four_octet_as=False) for u in updates]
    opens = [Open.for_speaker(64512, "192.168.0.11", families=((AFI.IPV4, SAFI.UNICAST), (AFI.IPV6, SAFI.UNICAST))),
             Open.for_speaker(4200000000, "10.0.0.1", hold_time=9),
             Open(4, 65001, 180, "10.0.0.2", (UnknownCapability(64, b"\x00\x78"), UnknownCapability(73, b"\x03abc")))]
    return messages + [o.encode() for o in opens] + [
        Keepalive().encode(), Notification(6, 2, b"\x05hello").encode(), RouteRefresh(1, 1).encode()]


def position(data: bytearray, rng: random.Random) -> int:
    """Where to edit: nine times in ten inside the body, so most inputs get past the marker."""
    if len(data) > 19 and rng.random() < 0.9:
        return rng.randrange(19, len(data))
    return rng.randrange(len(data))


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        op = rng.randrange(9)
        if op == 0 and data:
            data[position(data, rng)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            start = position(data, rng)
            data[start:start + rng.randint(0, 3)] = rng.randbytes(rng.randint(1, 6))
        elif op == 2 and data:
            start = position(data, rng)
            del data[start:start + rng.randint(1, 6)]
        elif op == 3:
            del data[rng.randint(0, len(data)):]
        elif op == 4 and len(data) >= 18:
            data[16:18] = rng.choice([len(data), rng.randrange(65536), rng.randint(19, 4096)]).to_bytes(2, "big")
        elif op == 5 and len(data) > 19:
            data[rng.randrange(19, len(data))] = rng.choice([0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 6 and len(data) > 19:
            data[rng.randrange(19, len(data))] = rng.randrange(256)
        elif op == 7:
            other = rng.choice(pool)
            cut = rng.randint(19, len(other)) if len(other) > 19 else len(other)
            data += other[19:cut]
        elif op == 8 and len(data) > 23:
            # a random 2-octet value where a length field may sit (Withdrawn Routes Length,
            # Total Path Attribute Length, an extended attribute length)
            spot = rng.randrange(19, len(data) - 1)
            data[spot:spot + 2] = rng.randrange(65536).to_bytes(2, "big")
    if len(data) >= 18 and rng.random() < 0.75:
        data[16:18] = len(data).to_bytes(2, "big")      # usually keep the Length honest, to reach the body
    return bytes(data)


def random_input(rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randint(0, 80))
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes([rng.randint(0, 6)]) + body


def check(data: bytes, four_octet_as: bool, outcomes: Counter) -> str | None:
    """Decode once; count the outcome; return a description if the contract broke."""
    try:
        message = decode(data, four_octet_as=four_octet_as)
    except BGPMessageError as err:
        pair = (int(err.code), int(err.subcode))
        outcomes[f"NOTIFICATION {pair[0]}/{pair[1]} {error_name(*pair)}"] += 1
        return None if pair in VALID_ERRORS else f"undefined error pair {pair}"
    except KubenetLabError as err:
        outcomes[f"other {type(err).__name__}"] += 1
        return None
    except Exception as err:  # noqa: BLE001 - exactly what the fuzzer is looking for
        return f"{type(err).__name__}: {err}"
    kind = message.message_type.name.replace("_", "-")
    if isinstance(message, Update) and message.malformed:
        outcomes[f"UPDATE decoded, {'treat-as-withdraw' if message.treat_as_withdraw else 'attribute discard'}"] += 1
        return None
    outcomes[f"{kind} decoded"] += 1
    try:
        again = message.encode(four_octet_as=four_octet_as) if isinstance(message, Update) else message.encode()
        if decode(again, four_octet_as=four_octet_as) != message:
            return "decode(encode(message)) differs from message"
    except Exception as err:  # noqa: BLE001
        return f"re-encoding raised {type(err).__name__}: {err}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=INPUTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    pool = seeds()
    outcomes: Counter = Counter()
    failures: list[tuple[str, bytes, bool]] = []
    started = time.perf_counter()
    done = 0
    while done < args.inputs and time.perf_counter() - started < args.seconds:
        data = random_input(rng) if rng.random() < 0.1 else mutate(rng.choice(pool), rng, pool)
        for four_octet_as in (True, False):
            problem = check(data, four_octet_as, outcomes)
            if problem:
                failures.append((problem, data, four_octet_as))
        try:
            split_messages(data + data)
        except KubenetLabError:
            pass
        except Exception as err:  # noqa: BLE001
            failures.append((f"split_messages: {type(err).__name__}: {err}", data, True))
        done += 1
    elapsed = time.perf_counter() - started

    decodes = sum(outcomes.values())
    rows = [(name, f"{count:,}", f"{100 * count / decodes:.1f}") for name, count in outcomes.most_common()]
    header = ("outcome", "decodes", "%")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    print()
    print(f"inputs {done:,} (x2 peer kinds = {decodes + len(failures):,} decodes) in {elapsed:.1f} s, "
          f"{done / elapsed:,.0f} inputs/s, seed {args.seed}, stopped by "
          f"{'input count' if done >= args.inputs else 'time limit'}")
    print(f"contract violations: {len(failures)}")
    for problem, data, four_octet_as in failures[:5]:
        print(f"  {problem}  four_octet_as={four_octet_as}  input={data.hex()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
