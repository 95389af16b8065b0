// Validates custom resources offline against the schemas of their CRDs, as packaged by
// kubernetes-models (models generated from each project's CRD manifests), in two passes:
//
// 1. The model's validate(): types, required fields, enums, patterns and formats, compiled from
//    the CRD's openAPIV3Schema. It lets unknown fields through: the CRD schemas do not forbid
//    them, and the API server prunes them silently (or rejects them, with kubectl's default
//    strict field validation).
// 2. TypeScript's excess-property check against the model's interface, which rejects an unknown
//    field at any depth: the "strict" half, which kubernetes-validate --strict gives the
//    built-in kinds.
//
// Usage: node validate.mjs objects.json (a JSON array of objects). Exits non-zero on the first
// pass's errors, on the second's, or on an object of a kind without a model here.
import { readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

// apiVersion -> module folder of its models. A kind missing here fails: never skipped.
const MODELS = {
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
  "gateway.networking.k8s.io/v1": "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1",
};

const here = dirname(fileURLToPath(import.meta.url));
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
const name = (o) => `${o.apiVersion} ${o.kind} ${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
let failures = 0;

const typed = [];
for (const [i, object] of objects.entries()) {
  const folder = MODELS[object.apiVersion];
  if (!folder) {
    console.error(`${name(object)}: no schema for apiVersion ${object.apiVersion}`);
    failures++;
    continue;
  }
  const module = `${folder}/${object.kind}`;
  let Model;
  try {
    Model = (await import(module))[object.kind];
  } catch (e) {
    console.error(`${name(object)}: no schema for kind ${object.kind} (${e.code ?? e.message})`);
    failures++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (e) {
    console.error(`${name(object)}: ${e.message}`);
    failures++;
  }
  typed.push(
    `import type { I${object.kind} as T${i} } from "${module}";\n` +
      `// ${name(object)}\nexport const o${i}: T${i} = ${JSON.stringify(object, null, 2)};\n`,
  );
}

if (typed.length > 0) {
  const file = join(here, "objects.ts");
  writeFileSync(file, typed.join("\n"));
  try {
    execFileSync(
      process.execPath,
      [
        join(here, "node_modules/typescript/bin/tsc"),
        "--noEmit",
        "--strict",
        "--target", "es2022",
        "--module", "nodenext",
        "--moduleResolution", "nodenext",
        "--skipLibCheck",
        file,
      ],
      { cwd: here, stdio: ["ignore", "pipe", "pipe"] },
    );
  } catch (e) {
    // tsc names the line of objects.ts; the comment above each object says which it is.
    console.error(`unknown or mistyped fields:\n${e.stdout}${e.stderr}`);
    console.error(`(see ${file})`);
    failures++;
  }
}

if (failures > 0) {
  process.exit(1);
}
console.log(`${objects.length} custom resources valid: ${objects.map(name).join(", ")}`);
