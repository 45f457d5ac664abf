// Validates packaging/k8s against the Kubernetes OpenAPI schemas (npm kubernetes-models: types,
// required fields, formats) and checks what the brief asks of it. Usage: node check_k8s.mjs SRC NODE_MODULES
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [src, nm] = process.argv.slice(2);
const dir = path.join(src, "packaging/k8s");
const yaml = (await import(pathToFileURL(path.join(nm, "js-yaml/dist/js-yaml.mjs")))).default;
const models = {
  "apps/v1/Deployment": "apps/v1/Deployment.js",
  "v1/Service": "v1/Service.js",
  "v1/PersistentVolumeClaim": "v1/PersistentVolumeClaim.js",
  "autoscaling/v2/HorizontalPodAutoscaler": "autoscaling/v2/HorizontalPodAutoscaler.js",
};
let failures = 0;
const fail = (file, msg) => { console.log(`FAIL ${file}: ${msg}`); failures++; };
const objects = {};
for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  const docs = yaml.loadAll(readFileSync(path.join(dir, file), "utf8"));
  for (const doc of docs) {
    if (!doc) continue;
    if (file === "prometheus-adapter-rules.yaml") {  // Helm values, not an object
      if (!doc.rules?.custom?.[0]?.seriesQuery?.includes("fathom_requests_total")) fail(file, "no rule over fathom_requests_total");
      continue;
    }
    const key = `${doc.apiVersion}/${doc.kind}`;
    if (doc.kind === "Kustomization") {
      for (const r of doc.resources ?? []) if (!existsSync(path.join(dir, r))) fail(file, `resource ${r} does not exist`);
      continue;
    }
    if (!models[key]) { fail(file, `no schema for ${key}`); continue; }
    const mod = await import(pathToFileURL(path.join(nm, "kubernetes-models", models[key])));
    const Model = mod[doc.kind];
    try {
      new Model(doc).validate();
      console.log(`ok   ${file}: ${key} ${doc.metadata.name}`);
    } catch (e) {
      fail(file, `${key}: ${e.message}`);
    }
    objects[file] = doc;
  }
}

// What the deployment must do.
const dep = objects["deployment.yaml"];
const c = dep?.spec?.template?.spec?.containers?.[0];
for (const probe of ["readinessProbe", "livenessProbe"])
  if (c?.[probe]?.httpGet?.path !== "/health") fail("deployment.yaml", `${probe} is not an HTTP GET of /health`);
if (!dep?.spec?.template?.spec?.securityContext?.runAsNonRoot) fail("deployment.yaml", "pods may run as root");
if (!(c?.resources?.limits?.["nvidia.com/gpu"] >= 1)) fail("deployment.yaml", "no GPU limit");
if (c?.args?.[0] !== "serve") fail("deployment.yaml", "the container does not run serve");
const svc = objects["service.yaml"];
const selects = (sel, labels) => Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);
if (!selects(svc?.spec?.selector, dep?.spec?.template?.metadata?.labels)) fail("service.yaml", "selector does not match the pods");
for (const f of ["hpa.yaml", "hpa-requests-per-second.yaml"]) {
  const h = objects[f];
  if (h?.apiVersion !== "autoscaling/v2") fail(f, "not autoscaling/v2");
  if (h?.spec?.minReplicas !== 2 || h?.spec?.maxReplicas !== 10) fail(f, "replicas are not 2..10");
  if (h?.spec?.scaleTargetRef?.name !== dep?.metadata?.name) fail(f, "does not scale the serve Deployment");
  const cpu = h?.spec?.metrics?.find((m) => m.type === "Resource" && m.resource?.name === "cpu");
  if (cpu?.resource?.target?.averageUtilization !== 70) fail(f, "CPU target is not 70%");
}
const rps = objects["hpa-requests-per-second.yaml"]?.spec?.metrics?.find((m) => m.type === "Pods");
if (rps?.pods?.metric?.name !== "fathom_requests_per_second") fail("hpa-requests-per-second.yaml", "no requests-per-second metric");
console.log(failures ? `${failures} failed` : "k8s manifests valid");
process.exit(failures ? 1 : 0);
