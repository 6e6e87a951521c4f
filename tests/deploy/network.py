"""Kubernetes NetworkPolicy semantics, to ask of rendered manifests "may A connect to B on port P?".

As the API documents them (networking.k8s.io/v1): a pod selected by no policy of a type
(Ingress, Egress) is open in that direction; a selected one allows only what one of those
policies' rules allows (a rule: peers, or anyone when it names none, and ports, or any when it
names none). A connection needs both the source's egress and the destination's ingress.
Peers: `podSelector` alone means this namespace, `namespaceSelector` (with an optional
`podSelector`) the namespaces whose labels match (every namespace carries
kubernetes.io/metadata.name), `ipBlock` an address range minus its exceptions, for addresses
outside the cluster. A named port is the destination container's port of that name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.deploy import manifests as m


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number


@dataclass(frozen=True)
class Outside:
    """An address outside the cluster (the internet, a managed database)."""

    ip: str


Endpoint = Pod | Outside


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not set(selector) <= {"matchLabels", "matchExpressions"}:
        raise ValueError(f"unknown selector fields: {selector}")
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Outside):
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        within = [ipaddress.ip_network(block["cidr"])]
        if address.version != within[0].version or address not in within[0]:
            return False
        return not any(
            address in ipaddress.ip_network(e)
            for e in block.get("except", [])
            if ipaddress.ip_network(e).version == address.version
        )
    if not isinstance(other, Pod):
        return False
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = other.namespace == policy_namespace
    else:
        in_namespace = selects(namespaces, {"kubernetes.io/metadata.name": other.namespace})
    pods = peer.get("podSelector")
    return in_namespace and (pods is None or selects(pods, other.labels))


def port_matches(ports: list[dict[str, Any]], destination: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if isinstance(destination, Pod) and destination.ports.get(wanted) == port:
                return True
        elif wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


@dataclass(frozen=True)
class Connection:
    src: Endpoint
    dst: Endpoint
    port: int
    protocol: str = "TCP"


def _policies(resources, namespace: str, pod: Pod, direction: str) -> list[dict]:
    found = []
    for policy in m.by_kind(resources, "NetworkPolicy"):
        spec = policy["spec"]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
        in_namespace = policy["metadata"].get("namespace", namespace) == pod.namespace
        if in_namespace and direction in types and selects(spec["podSelector"], pod.labels):
            found.append(policy)
    return found


def _direction_allows(resources, namespace: str, connection: Connection, direction: str) -> bool:
    pod, other = (connection.src, connection.dst) if direction == "Egress" else (connection.dst, connection.src)
    assert isinstance(pod, Pod)
    policies = _policies(resources, namespace, pod, direction)
    if not policies:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in policies:
        policy_namespace = policy["metadata"].get("namespace", namespace)
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(peer, policy_namespace, other) for peer in peers):
                continue
            if port_matches(rule.get("ports", []), connection.dst, connection.port, connection.protocol):
                return True
    return False


def allowed(resources, namespace: str, connection: Connection) -> bool:
    """Whether the connection may be opened under the policies in `resources` (all in
    `namespace`, the overlay's): the source's egress and the destination's ingress allow it."""
    egress = isinstance(connection.src, Outside) or _direction_allows(resources, namespace, connection, "Egress")
    ingress = isinstance(connection.dst, Outside) or _direction_allows(resources, namespace, connection, "Ingress")
    return egress and ingress


def workload_pod(resource: dict, namespace: str) -> Pod:
    """The pod a workload runs, with its labels and named container ports."""
    ports = {
        p["name"]: p["containerPort"]
        for c in m.containers(resource, init=False)
        for p in c.get("ports", [])
        if "name" in p
    }
    return Pod(namespace, dict(m.pod_labels(resource)), ports)
