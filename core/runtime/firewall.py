"""The host's firewall around the panel's networks: the internet yes, the host's private side no.

Builds and apps are strangers' code. On a plain Docker bridge they can open connections to the
host itself (any service listening on 0.0.0.0, through the bridge's gateway address), to the
host's private network (a database in the same VPC) and to the cloud metadata address
169.254.169.254 (credentials of the machine's role). So every network the panel makes (each
project's network, each compose stack's networks, the build network) sits on a host interface
whose name starts with BRIDGE_PREFIX ("ghst"), and the panel installs these iptables rules:

    INPUT        -i ghst+ -j GHST-INPUT         (first rule)
    GHST-INPUT   replies to the host's own connections pass; anything else is rejected
    DOCKER-USER  -i ghst+ -j GHST-FORWARD       (first rule; dockerd jumps there from FORWARD)
    GHST-FORWARD replies pass; traffic to another panel bridge is left to Docker (a stack's own
                 containers talk to each other, two projects are kept apart by Docker); DNS to
                 the host's resolvers passes; link-local, RFC 1918 and CGNAT addresses are
                 rejected; the rest (the internet) passes

`ensure` is idempotent: it reads the chains back and rewrites them (atomically, with
iptables-restore) only when they differ, and touches no rule that is not its own. Without
iptables, or without the right to change it, it raises UnavailableError saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import UnavailableError

log = logging.getLogger(__name__)

BRIDGE_PREFIX = "ghst"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
INPUT_CHAIN = "GHST-INPUT"
FORWARD_CHAIN = "GHST-FORWARD"
DEFAULT_BLOCKED = "169.254.0.0/16,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10"
TIMEOUT = 30.0
_IFNAMSIZ = 15  # longest Linux interface name


def bridge_name(network: str) -> str:
    """The host interface of a panel network: the prefix and a hash of its Docker name."""
    digest = hashlib.sha256(network.encode()).hexdigest()
    return (BRIDGE_PREFIX + digest)[:_IFNAMSIZ]


def network_options(network: str, *, isolated: bool = False) -> dict[str, str]:
    """Docker driver options for a panel network (`isolated`: its containers cannot talk to
    each other, as on the build network, shared by every project's builds)."""
    options = {BRIDGE_NAME_OPTION: bridge_name(network)}
    if isolated:
        options[ICC_OPTION] = "false"
    return options


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's IPv4 DNS servers, which dockerd's embedded DNS forwards containers' queries
    to from the containers' own network."""
    found: list[str] = []
    try:
        text = resolv_conf.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                found.append(str(address))
    return found


def wanted_rules(blocked: Iterable[str], dns: Iterable[str]) -> dict[str, list[str]]:
    """The rules of each of our chains, as `iptables -S` prints them."""
    bridges = f"{BRIDGE_PREFIX}+"
    replies = "-m conntrack --ctstate RELATED,ESTABLISHED"
    forward = [
        f"-A {FORWARD_CHAIN} {replies} -j RETURN",
        f"-A {FORWARD_CHAIN} -o {bridges} -j RETURN",
    ]
    for server in dns:
        for protocol in ("udp", "tcp"):
            forward.append(
                f"-A {FORWARD_CHAIN} -d {server}/32 -p {protocol} -m {protocol} --dport 53 "
                "-j RETURN"
            )
    for network in blocked:
        forward.append(
            f"-A {FORWARD_CHAIN} -d {network} -j REJECT --reject-with icmp-port-unreachable"
        )
    return {
        INPUT_CHAIN: [
            f"-A {INPUT_CHAIN} {replies} -j RETURN",
            f"-A {INPUT_CHAIN} -j REJECT --reject-with icmp-port-unreachable",
        ],
        FORWARD_CHAIN: forward,
    }


def parse_blocked(text: str) -> list[str]:
    """The setting's comma-separated networks, normalised as iptables prints them."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError as error:
                raise UnavailableError(
                    f"GHST_FIREWALL_BLOCKED: {part.strip()!r} is not an IPv4 network ({error})."
                ) from None
    return networks


class HostFirewall:
    """Installs and checks the rules of the module docstring."""

    def __init__(
        self, blocked: Sequence[str], *, iptables: str = "iptables", dns: Sequence[str] = ()
    ) -> None:
        self._blocked = list(blocked)
        self._iptables = iptables
        self._dns = list(dns)
        self._lock = asyncio.Lock()

    async def ensure(self) -> bool:
        """Make the rules what they should be; True when something had to change."""
        async with self._lock:
            wanted = wanted_rules(self._blocked, self._dns)
            changed = False
            current = {chain: await self._chain(chain) for chain in wanted}
            if current != wanted:
                await self._restore(wanted)
                changed = True
            jumps = (("INPUT", INPUT_CHAIN), ("DOCKER-USER", FORWARD_CHAIN))
            for parent, chain in jumps:
                rule = ["-i", f"{BRIDGE_PREFIX}+", "-j", chain]
                if await self._run("-C", parent, *rule, check=False) != 0:
                    await self._run("-I", parent, "1", *rule)
                    changed = True
            if changed:
                log.info("installed the firewall rules of the panel's networks")
            return changed

    async def _chain(self, chain: str) -> list[str] | None:
        """The chain's rules (`-S`), or None when it does not exist."""
        code, output = await self._output("-S", chain)
        if code != 0:
            return None
        return [line for line in output.splitlines() if line.startswith("-A ")]

    async def _restore(self, chains: dict[str, list[str]]) -> None:
        # Declaring a chain in --noflush mode empties it, in the same commit as its new rules:
        # there is no moment without them.
        lines = ["*filter"]
        lines += [f":{chain} - [0:0]" for chain in chains]
        for rules in chains.values():
            lines += rules
        lines.append("COMMIT")
        text = "\n".join(lines) + "\n"
        restore = self._iptables + "-restore"
        code, output = await _exec([restore, "-w", "--noflush"], text)
        if code != 0:
            raise UnavailableError(_cannot(f"{restore} failed: {output.strip()}"))

    async def _run(self, *arguments: str, check: bool = True) -> int:
        code, output = await self._output(*arguments)
        if check and code != 0:
            raise UnavailableError(
                _cannot(f"`iptables {' '.join(arguments)}` failed: {output.strip()}")
            )
        return code

    async def _output(self, *arguments: str) -> tuple[int, str]:
        return await _exec([self._iptables, "-w", *arguments], None)


def _cannot(why: str) -> str:
    return (
        "The panel cannot install the firewall rules that keep apps away from this server's "
        f"private network ({why}). It needs iptables and root (CAP_NET_ADMIN); an operator who "
        "manages these rules otherwise sets GHST_FIREWALL=false."
    )


async def _exec(argv: list[str], stdin: str | None) -> tuple[int, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as error:
        raise UnavailableError(_cannot(f"{argv[0]} cannot run: {error.strerror}")) from None
    try:
        output, _ = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), TIMEOUT
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise UnavailableError(_cannot(f"{argv[0]} did not finish in {TIMEOUT:g} s")) from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")
