"""Check Kubernetes manifests against the object schema of the Kubernetes Python client (Debian's
python3-kubernetes): every document deserializes into its kind's model, required fields present (the
models' client-side validation), and serializes back to exactly what was written, so a misspelt or
misplaced field (which the model would drop) fails. Prints the documents as JSON for further checks."""

import json
import sys

import yaml
from kubernetes import client

MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}


class Response:
    def __init__(self, doc):
        self.data = json.dumps(doc)


def normal(v):
    """Quantities and ports as the API compares them: YAML ints and strings alike."""
    if isinstance(v, dict):
        return {k: normal(x) for k, x in v.items()}
    if isinstance(v, list):
        return [normal(x) for x in v]
    return v


def main():
    api = client.ApiClient()
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]
    for i, doc in enumerate(docs):
        key = (doc.get("apiVersion"), doc.get("kind"))
        model = MODELS.get(key)
        if model is None:
            sys.exit(f"document {i}: no schema for {key}")
        try:
            obj = api.deserialize(Response(doc), model)
        except (ValueError, TypeError) as e:
            sys.exit(f"document {i} ({key[1]}): {e}")
        back = api.sanitize_for_serialization(obj)
        if normal(back) != normal(doc):
            sys.exit(f"document {i} ({key[1]}): fields the schema does not know (dropped on the way through):\n"
                     f"written: {json.dumps(doc, sort_keys=True)}\nschema:  {json.dumps(back, sort_keys=True)}")
    print(json.dumps(docs))


main()
