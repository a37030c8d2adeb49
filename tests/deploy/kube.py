"""Play deploy/k8s/ with `podman kube play`, doing what a Kubernetes control plane would do
for the kinds podman 4.3 does not run itself (it runs Pods, Deployments with their replicas,
PersistentVolumeClaims and ConfigMaps):

* a StatefulSet becomes its pods `<name>-<ordinal>` (host name, the pod-name label) and one
  PersistentVolumeClaim per volumeClaimTemplate and pod, `<template>-<name>-<ordinal>`;
* Secrets are resolved into the pods' environment (podman 4.3 creates podman secrets from
  them but injects nothing), as the kubelet would;
* a Service becomes a DNS alias of the pod it selects (`--network NET:alias=NAME`, given to
  the play of that pod); headless Services need nothing, pods resolve by name;
* container ports without a hostPort are dropped: Kubernetes only documents them, while
  podman 4.3 would publish each on the host (and a second pod then cannot start);
* an emptyDir volume is left to the image's own VOLUME (a fresh anonymous volume per
  container): podman 4.3 would make one named volume that every replica shares.

Nothing else is rewritten: images, environment, probes, resources and volumes are the
manifests' own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def secret_from_env_file(name: str, text: str) -> Doc:
    """What `kubectl create secret generic NAME --from-env-file=FILE` makes (stringData)."""
    data = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": data}


def _as_kubelet_runs_it(pod_spec: Doc, secrets: Mapping[str, Mapping[str, str]]) -> None:
    empty = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
    pod_spec["volumes"] = [v for v in pod_spec.get("volumes", []) if v["name"] not in empty]
    for c in pod_spec.get("containers", []):
        c["ports"] = [p for p in c.get("ports", []) if p.get("hostPort")]
        c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if m["name"] not in empty]
        env = c.setdefault("env", [])
        kept = []
        for src in c.get("envFrom", []):
            ref = src.get("secretRef")
            if ref is None:
                kept.append(src)
                continue
            values = secrets.get(ref["name"])
            if values is None and not ref.get("optional"):
                raise KeyError(f"secret {ref['name']} does not exist")
            env[:0] = [{"name": k, "value": v} for k, v in (values or {}).items()]
        c["envFrom"] = kept
        for e in env:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                e.pop("valueFrom")
                e["value"] = secrets[ref["name"]][ref["key"]]


def expand(docs: Iterable[Doc], secrets: Iterable[Doc] = ()) -> tuple[list[Doc], dict[str, str]]:
    """(documents podman can play, {pod name: Service name to alias it as})."""
    values = {s["metadata"]["name"]: dict(s.get("stringData") or {}) for s in secrets}
    docs = [copy.deepcopy(d) for d in docs]
    services = [d for d in docs if d["kind"] == "Service"]
    out: list[Doc] = []
    aliases: dict[str, str] = {}
    for d in docs:
        kind = d["kind"]
        if kind in ("Service", "Secret"):
            continue
        if kind == "Deployment":
            _as_kubelet_runs_it(d["spec"]["template"]["spec"], values)
            out.append(d)
        elif kind == "StatefulSet":
            name = d["metadata"]["name"]
            for i in range(int(d["spec"].get("replicas", 1))):
                pod_name = f"{name}-{i}"
                template = copy.deepcopy(d["spec"]["template"])
                labels = {**template["metadata"].get("labels", {}),
                          "statefulset.kubernetes.io/pod-name": pod_name}
                spec = template["spec"]
                spec["hostname"] = pod_name
                _as_kubelet_runs_it(spec, values)
                volumes = spec.setdefault("volumes", [])
                for claim in d["spec"].get("volumeClaimTemplates", []):
                    claim_name = f"{claim['metadata']['name']}-{pod_name}"
                    out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": claim_name}, "spec": claim["spec"]})
                    volumes.append({"name": claim["metadata"]["name"],
                                    "persistentVolumeClaim": {"claimName": claim_name}})
                out.append({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": pod_name, "labels": labels}, "spec": spec})
                for svc in services:
                    selector = svc["spec"].get("selector") or {}
                    if (svc["spec"].get("clusterIP") != "None" and selector
                            and all(labels.get(k) == v for k, v in selector.items())):
                        aliases[pod_name] = svc["metadata"]["name"]
        else:
            out.append(d)
    return out, aliases


def dump(docs: Iterable[Doc], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path
