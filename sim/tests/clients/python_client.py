"""The official Python client against the simulator: loads the written
kubeconfig (HTTPS, CA data, bearer token), lists pods, creates a Secret and
reads it back. Usage: python_client.py KUBECONFIG NAMESPACE; prints one JSON line."""
import base64
import json
import sys

from kubernetes import client, config

kubeconfig, namespace = sys.argv[1], sys.argv[2]
config.load_kube_config(config_file=kubeconfig)
core = client.CoreV1Api()
pods = core.list_namespaced_pod(namespace)
secret = client.V1Secret(
    metadata=client.V1ObjectMeta(name="from-python"),
    string_data={"password": "s3cret"},
)
created = core.create_namespaced_secret(namespace, secret)
read = core.read_namespaced_secret("from-python", namespace)
print(json.dumps({
    "pods": len(pods.items),
    "createdName": created.metadata.name,
    "password": base64.b64decode(read.data["password"]).decode(),
    "type": read.type,
}))
