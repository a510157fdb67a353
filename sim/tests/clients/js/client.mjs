// The official JavaScript client against the simulator: loads the written
// kubeconfig as is (HTTPS, CA data, bearer token), creates a ConfigMap and
// reads the created object from the 201 answer, reads it back and lists pods.
// Usage: node client.mjs KUBECONFIG NAMESPACE; prints one JSON line.
import * as k8s from '@kubernetes/client-node';

const [kubeconfig, namespace] = process.argv.slice(2);
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);

const created = await core.createNamespacedConfigMap({
  namespace,
  body: { metadata: { name: 'from-js' }, data: { greeting: 'hello' } },
});
const read = await core.readNamespacedConfigMap({ name: 'from-js', namespace });
const pods = await core.listNamespacedPod({ namespace });
console.log(JSON.stringify({
  createdName: created.metadata.name,
  createdUid: created.metadata.uid,
  readGreeting: read.data.greeting,
  podKind: pods.kind ?? 'PodList',
  pods: pods.items.length,
}));
