"""Validates rendered manifests strictly; run by validate.sh with the venv's Python.

    python validate.py KUBERNETES_VERSION RENDERED.yaml...

Each resource is checked against:
- the Kubernetes OpenAPI schema of KUBERNETES_VERSION, strict (unknown fields are errors), by
  kubernetes-validate, for the built-in kinds;
- schemas/*.json for the custom resources listed in CRD_SCHEMAS (kubernetes-validate only knows
  built-in kinds, and would merely warn about them);
- a few rules of this project that no schema states (pod security settings, probes, the order
  of dependent environment variables, pinned images, one namespace per overlay).
A kind that neither knows is an error, not a warning. Prints one line per failure and a
summary; exits 1 on any failure.
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

HERE = pathlib.Path(__file__).resolve().parent

# (apiVersion, kind) of a custom resource -> its schema, made by schemas/crd_to_jsonschema.py.
CRD_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "schemas/httproute-gateway-v1.json",
}

POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def crd_errors(resource):
    path = CRD_SCHEMAS[(resource["apiVersion"], resource["kind"])]
    schema = json.loads((HERE / path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.path)))
    ]


def builtin_errors(resource, version):
    try:
        kv.validate(resource, version, strict=True)
    except kv.ValidationError as err:
        return [f"{'.'.join(map(str, err.path)) or '<root>'}: {err.message}"]
    except kv.SchemaNotFoundError:
        return [
            f"no schema for {resource['apiVersion']} {resource['kind']}: a custom resource needs "
            "an entry in CRD_SCHEMAS (validate.py)"
        ]
    return []


def policy_errors(resource):
    """What this project requires of every pod, beyond what the schemas allow."""
    if resource["kind"] not in POD_OWNERS:
        return []
    errors = []
    pod = resource["spec"]["template"]["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        errors.append("spec.template.spec.securityContext.runAsNonRoot must be true")
    for c in pod.get("containers", []):
        where = f"container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem must be true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            errors.append(f"{where}: capabilities.drop must include ALL")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@" not in image and tag in ("", "latest") and c.get("imagePullPolicy") != "Always":
            # A node that has an older image under this tag would keep running it.
            errors.append(f"{where}: image {image!r} has no fixed tag: pin one, or pull Always")
        if resource["kind"] != "Job":
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    errors.append(f"{where}: no {probe}")
        limits = c.get("resources", {}).get("limits", {})
        if "memory" not in limits or "memory" not in c.get("resources", {}).get("requests", {}):
            errors.append(f"{where}: memory request and limit are required")
        # $(VAR) expands only to variables defined earlier in the list; otherwise the kubelet
        # passes the text "$(VAR)" on as it is.
        defined = set()
        for env in c.get("env", []):
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", env.get("value", "")):
                if ref not in defined:
                    errors.append(f"{where}: env {env['name']} uses $({ref}) before it is defined")
            defined.add(env["name"])
        for arg in c.get("command", []) + c.get("args", []):
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                if ref not in defined:
                    errors.append(f"{where}: command/args use $({ref}), which env does not define")
    return errors


# Kinds that live outside namespaces (of those an overlay may hold).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def namespace_errors(resources):
    """One overlay, one namespace: a resource without one would land in the default namespace,
    away from the Services it refers to (kustomize sets it only on what it has seen when its
    namespace transformer runs)."""
    namespaces = {
        r.get("metadata", {}).get("namespace")
        for r in resources
        if r.get("kind") not in CLUSTER_SCOPED
    }
    if len(namespaces) > 1 or None in namespaces:
        missing = [
            f"{r.get('kind')}/{r.get('metadata', {}).get('name')}"
            for r in resources
            if r.get("kind") not in CLUSTER_SCOPED and not r.get("metadata", {}).get("namespace")
        ]
        found = sorted(n for n in namespaces if n)
        return [f"resources in namespaces {found}; without one: {missing or 'none'}"]
    return []


def main():
    version, files = sys.argv[1], sys.argv[2:]
    passed = failed = 0
    for name in files:
        with open(name) as f:
            resources = [r for r in yaml.safe_load_all(f) if r]
        if not resources:
            print(f"FAIL {pathlib.Path(name).stem}: no resources")
            failed += 1
        for err in namespace_errors(resources):
            print(f"FAIL {pathlib.Path(name).stem}: {err}")
            failed += 1
        for resource in resources:
            label = f"{pathlib.Path(name).stem}: {resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
            if (resource.get("apiVersion"), resource.get("kind")) in CRD_SCHEMAS:
                errors = crd_errors(resource)
            else:
                errors = builtin_errors(resource, version)
            errors += policy_errors(resource)
            if errors:
                failed += 1
                for err in errors:
                    print(f"FAIL {label}: {err}")
            else:
                passed += 1
    print(f"manifests: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
