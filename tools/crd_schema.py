"""A strict JSON schema of one version of a CustomResourceDefinition, for offline validation.

The API server validates a custom resource against its CRD's openAPIV3Schema and, with strict
field validation (`kubectl apply` since 1.27), refuses unknown fields. This turns that schema into
a JSON schema (draft 2020-12) that does the same with `jsonschema`: objects with `properties`
refuse other fields unless the CRD preserves unknown fields there, int-or-string fields take
both, Go's inline regex flags move to the pattern's start, descriptions are dropped (they are
most of the size), and apiVersion/kind/metadata are added around `spec`.

    python -m tools.crd_schema CRD.yaml VERSION > deploy/k8s/schemas/<group>/<kind>_<version>.json

The schemas in deploy/k8s/schemas/monitoring.coreos.com were made this way from the Prometheus
Operator's CRDs (example/prometheus-operator-crd/ at its tag v0.93.0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an openAPIV3Schema node) as a JSON schema that refuses unknown fields."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict(sub) for sub in value]
        elif key == "pattern" and "(?i)" in value:
            out[key] = "(?i)" + value.replace("(?i)", "")  # Go allows inline flags anywhere, Python at the start
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The JSON schema of `crd`'s `version` (a whole resource: apiVersion, kind, metadata, spec)."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    served = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not served:
        raise SystemExit(f"{kind} has no version {version!r}")
    body = strict(served[0]["schema"]["openAPIV3Schema"])
    body["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
    body["properties"]["kind"] = {"const": kind}
    body["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    body["required"] = sorted({*body.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{group}/{kind.lower()}_{version}.json",
        "title": f"{kind} ({group}/{version})",
        "description": f"Made by tools/crd_schema.py from the CRD {crd['metadata']['name']} "
        f"({crd['metadata'].get('annotations', {}).get('operator.prometheus.io/version', 'unversioned')}): "
        "unknown fields are errors, as with the API server's strict field validation.",
        **body,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path, help="the CustomResourceDefinition (YAML)")
    parser.add_argument("version", help="the served version, e.g. v1")
    args = parser.parse_args(argv)
    crd = yaml.safe_load(args.crd.read_text())
    json.dump(crd_schema(crd, args.version), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
