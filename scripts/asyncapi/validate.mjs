// Parses AsyncAPI documents with the official parser; exits 1 when any has an error.
// usage: node scripts/asyncapi/validate.mjs FILE...
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Parser } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];

async function check(file) {
  const source = resolve(file);
  const { document, diagnostics } = await new Parser().parse(await readFile(source, "utf8"), { source });
  for (const { severity, message, path } of diagnostics) {
    console.log(`${file}: ${SEVERITY[severity]}: ${message} at /${path.join("/")}`);
  }
  return document !== undefined && !diagnostics.some(({ severity }) => severity === 0);
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node scripts/asyncapi/validate.mjs FILE...");
  process.exit(2);
}
const results = [];
for (const file of files) {
  results.push(await check(file));
}
process.exit(results.every(Boolean) ? 0 : 1);
