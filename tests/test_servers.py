"""Interaction probe of the real test servers over HTTP: what a FHIR R4 client can rely on, and where
each server's dialect differs (named in the asserts, not hidden)."""

from __future__ import annotations

import functools
import json
import time
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.servers import FhirServer, running_sekmet

FHIR_JSON = "application/fhir+json"
TIMEOUT = 10


@pytest.fixture
def http() -> requests.Session:
    """A FHIR JSON session whose every request is bounded in time."""
    session = requests.Session()
    session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
    session.request = functools.partial(session.request, timeout=TIMEOUT)  # type: ignore[method-assign]
    return session


@pytest.fixture
def system() -> str:
    """An identifier system of this test alone, so that tests sharing a server do not see each other."""
    return f"urn:fhir-admsc:test:{uuid.uuid4().hex}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def patient(system: str, value: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **fields}


def search(http: requests.Session, server: FhirServer, url: str, **params: str) -> dict[str, Any]:
    response = http.get(f"{server.base_url}/{url}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def post_bundle(http: requests.Session, server: FhirServer, kind: str, entries: list[dict]):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return http.post(server.base_url, json=bundle)


def put(resource: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """A transaction/batch entry that PUTs `resource` to `url` (default Type/id)."""
    url = url or f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def observation_of(reference: str) -> dict[str, Any]:
    """A transaction entry that POSTs an Observation about `reference`."""
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    return {
        "resource": {**resource, "subject": {"reference": reference}},
        "request": {"method": "POST", "url": "Observation"},
    }


def absolute(server: FhirServer, location: str) -> str:
    """An entry's response.location as a URL: sekmet's are absolute already, Medplum's and HAPI's
    relative."""
    return location if location.startswith("http") else f"{server.base_url}/{location}"


def located_id(location: str) -> str:
    """The resource id in an entry's response.location, whichever of the dialects above."""
    return location.split("/_history")[0].rstrip("/").rsplit("/", 1)[-1]


def status_code(entry: dict[str, Any]) -> int:
    return int(entry["response"]["status"].split()[0])


def assert_status_dialect(server: FhirServer, entry: dict[str, Any], code: int) -> None:
    """Bundle.entry.response.status: sekmet and HAPI add the reason phrase ("201 Created"), Medplum
    gives the bare code ("201"); R4 allows both."""
    phrase = f"{code} {HTTPStatus(code).phrase}"
    expected = {"sekmet": phrase, "hapi": phrase}
    assert entry["response"]["status"] == expected.get(server.name, str(code))


def test_metadata_is_an_r4_capability_statement(fhir_server: FhirServer, http: requests.Session):
    response = http.get(f"{fhir_server.base_url}/metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"].startswith("4.0.")
    rest = statement["rest"][0]
    # HAPI declares "transaction" only, though it takes batch Bundles at the same endpoint (see
    # test_a_batch_reports_each_entry): push then reads the server's current state one resource
    # per request instead of in batches of GETs.
    expected = {"transaction"} if fhir_server.name == "hapi" else {"transaction", "batch"}
    assert expected <= {i["code"] for i in rest["interaction"]}
    patient_entry = next(r for r in rest["resource"] if r["type"] == "Patient")
    interactions = {i["code"] for i in patient_entry["interaction"]}
    assert {"read", "create", "update", "search-type", "delete"} <= interactions
    assert patient_entry["conditionalUpdate"] is True
    assert "identifier" in {p["name"] for p in patient_entry["searchParam"]}


def test_put_with_a_client_id_creates_then_updates(fhir_server: FhirServer, http, system):
    pid = new_id("put")
    url = f"{fhir_server.base_url}/Patient/{pid}"
    created = http.put(url, json=patient(system, "1", id=pid, gender="female"))
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["id"] == pid
    version = first["meta"]["versionId"]
    assert created.headers["ETag"] == f'W/"{version}"'
    # HAPI answers an update that creates with Content-Location and no Location header.
    location = "Content-Location" if fhir_server.name == "hapi" else "Location"
    assert created.headers[location] == f"{url}/_history/{version}"

    updated = http.put(url, json=patient(system, "1", id=pid, gender="male"))
    assert updated.status_code == 200, updated.text
    second = updated.json()["meta"]["versionId"]
    assert second != version
    # versionId dialect: sekmet and HAPI count (1, 2, ...); Medplum gives each version a UUID.
    if fhir_server.name in ("sekmet", "hapi"):
        assert (version, second) == ("1", "2")
    else:
        assert uuid.UUID(version) and uuid.UUID(second)

    read = http.get(url)
    assert read.status_code == 200
    assert read.headers["Content-Type"].startswith(FHIR_JSON)
    assert read.json()["gender"] == "male"
    assert read.json()["meta"]["versionId"] == second


def test_search_by_identifier_finds_exactly_the_match(fhir_server: FhirServer, http, system):
    for value in ("A", "B"):
        pid = new_id(value)
        url = f"{fhir_server.base_url}/Patient/{pid}"
        assert http.put(url, json=patient(system, value, id=pid)).status_code == 201
    bundle = search(http, fhir_server, "Patient", identifier=f"{system}|B")
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    [entry] = bundle["entry"]
    assert entry["resource"]["identifier"][0]["value"] == "B"
    assert entry["fullUrl"] == f"{fhir_server.base_url}/Patient/{entry['resource']['id']}"


def test_paging_follows_next_links_to_every_match_once(fhir_server: FhirServer, http, system):
    entries = [put(patient(system, str(n), id=new_id(f"page{n}"))) for n in range(25)]
    assert post_bundle(http, fhir_server, "batch", entries).status_code == 200

    bundle = search(http, fhir_server, "Patient", identifier=f"{system}|", _count="10")
    if fhir_server.name == "hapi":
        # HAPI leaves total out of a search that spans pages (it counts in the background) unless
        # asked with _total=accurate; a client must not rely on total.
        assert "total" not in bundle
        counted = search(
            http, fhir_server, "Patient", identifier=f"{system}|", _count="10", _total="accurate"
        )
        assert counted["total"] == 25
    else:
        assert bundle["total"] == 25
    ids, sizes = [], []
    for _ in range(5):  # 3 pages expected; a bound against a server that links in a circle
        sizes.append(len(bundle.get("entry", [])))
        ids += [e["resource"]["id"] for e in bundle.get("entry", [])]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        # absolute links on the same base: Medplum and sekmet page the search by _offset; HAPI
        # links to the base itself with the id of the search it stored (_getpages) and an offset
        if fhir_server.name == "hapi":
            assert following[0].startswith(f"{fhir_server.base_url}?_getpages=")
            assert "_getpagesoffset=" in following[0]
        else:
            assert following[0].startswith(f"{fhir_server.base_url}/Patient?")
            assert "_offset=" in following[0]
        response = http.get(following[0])
        assert response.status_code == 200
        bundle = response.json()
    assert sizes == [10, 10, 5]
    assert sorted(ids) == sorted(e["resource"]["id"] for e in entries)


def test_transaction_of_puts_with_references_between_them(fhir_server: FhirServer, http, system):
    pid, eid, oid = new_id("txp"), new_id("txe"), new_id("txo")
    entries = [
        put(patient(system, "1", id=pid)),
        put(
            {
                "resourceType": "Encounter",
                "id": eid,
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{pid}"},
            }
        ),
        put(
            {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "code": {"text": "walking distance"},
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{eid}"},
            }
        ),
    ]
    response = post_bundle(http, fhir_server, "transaction", entries)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    assert [status_code(e) for e in result["entry"]] == [201, 201, 201]
    assert_status_dialect(fhir_server, result["entry"][0], 201)
    # response.location dialect: sekmet gives an absolute URL with the version, HAPI a relative one
    # with the version ("Type/id/_history/1"), Medplum "Type/id".
    location = result["entry"][0]["response"]["location"]
    if fhir_server.name == "sekmet":
        assert location.startswith(f"{fhir_server.base_url}/Patient/{pid}/_history/")
    elif fhir_server.name == "hapi":
        assert location == f"Patient/{pid}/_history/1"
    else:
        assert location == f"Patient/{pid}"
    # HAPI leaves the resources out of a transaction-response unless asked (Prefer:
    # return=representation); Medplum and sekmet return them.
    assert all(("resource" in e) == (fhir_server.name != "hapi") for e in result["entry"])

    observation = http.get(f"{fhir_server.base_url}/Observation/{oid}").json()
    assert observation["subject"]["reference"] == f"Patient/{pid}"
    assert observation["encounter"]["reference"] == f"Encounter/{eid}"


def test_transaction_resolves_urn_uuid_and_conditional_references(
    fhir_server: FhirServer, http, system
):
    stored = new_id("stored")
    assert http.put(
        f"{fhir_server.base_url}/Patient/{stored}", json=patient(system, "stored", id=stored)
    ).ok
    urn = f"urn:uuid:{uuid.uuid4()}"

    entries = [
        {
            "fullUrl": urn,
            "resource": patient(system, "new"),
            "request": {"method": "POST", "url": "Patient"},
        },
        observation_of(urn),
        observation_of(f"Patient?identifier={system}|stored"),
    ]
    response = post_bundle(http, fhir_server, "transaction", entries)
    assert response.status_code == 200, response.text
    created = response.json()["entry"]
    new_patient = located_id(created[0]["response"]["location"])
    subjects = [
        http.get(absolute(fhir_server, e["response"]["location"])).json()["subject"]["reference"]
        for e in created[1:]
    ]
    assert subjects == [f"Patient/{new_patient}", f"Patient/{stored}"]


def test_conditional_reference_to_an_entry_of_the_same_transaction(
    fhir_server: FhirServer, http, system
):
    """Medplum (through fhir-server.mjs) and HAPI resolve a conditional reference against the entries
    of the transaction too; sekmet only against what is stored before it, so there the transaction
    fails (404) and leaves nothing. A client must not rely on either: send the patient first, or use
    urn:uuid."""
    entries = [
        put(patient(system, "new"), url=f"Patient?identifier={system}|new"),
        observation_of(f"Patient?identifier={system}|new"),
    ]
    response = post_bundle(http, fhir_server, "transaction", entries)
    if fhir_server.name in ("medplum", "hapi"):
        assert response.status_code == 200, response.text
        created = response.json()["entry"]
        observation = http.get(absolute(fhir_server, created[1]["response"]["location"])).json()
        patient_id = located_id(created[0]["response"]["location"])
        assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    else:
        assert response.status_code == 404
        assert "matched nothing" in response.text
        assert search(http, fhir_server, "Patient", identifier=f"{system}|new")["total"] == 0


def test_a_conditional_reference_that_matches_nothing_fails_the_transaction(
    fhir_server: FhirServer, http, system
):
    """R4 says the transaction fails, not with which status: Medplum says 400, sekmet and HAPI 404."""
    entries = [
        put(patient(system, "kept", id=new_id("kept"))),
        observation_of(f"Patient?identifier={system}|none"),
    ]
    response = post_bundle(http, fhir_server, "transaction", entries)
    assert response.status_code == {"medplum": 400, "sekmet": 404, "hapi": 404}[fhir_server.name]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert search(http, fhir_server, "Patient", identifier=f"{system}|")["total"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"birthDate": "not-a-date"}, id="invalid-date"),
        pytest.param({"unknownElement": True}, id="unknown-element"),
    ],
)
def test_a_failed_transaction_leaves_nothing_behind(fhir_server: FhirServer, http, system, bad):
    good, wrong = new_id("good"), new_id("bad")
    entries = [put(patient(system, "good", id=good)), put(patient(system, "bad", id=wrong, **bad))]
    response = post_bundle(http, fhir_server, "transaction", entries)
    if fhir_server.name == "hapi" and "unknownElement" in bad:
        # HAPI's parser is lenient by default: it drops an element it does not know (a warning in
        # its log) and stores the rest, so this transaction succeeds.
        assert response.status_code == 200, response.text
        assert "unknownElement" not in http.get(f"{fhir_server.base_url}/Patient/{wrong}").json()
        return
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert http.get(f"{fhir_server.base_url}/Patient/{good}").status_code == 404
    assert search(http, fhir_server, "Patient", identifier=f"{system}|")["total"] == 0


def test_an_invalid_code_and_a_dangling_reference(fhir_server: FhirServer, http, system):
    """Neither Medplum nor sekmet checks required bindings (Patient.gender) or that a reference
    resolves, so a client must validate before it pushes; R4 lets a server accept both. HAPI refuses
    both by default (400): its parser knows the codes of R4's required enumerations, and it checks
    that a reference resolves."""
    refuses = fhir_server.name == "hapi"
    pid, oid = new_id("bogus"), new_id("dangling")
    response = http.put(
        f"{fhir_server.base_url}/Patient/{pid}", json=patient(system, "1", id=pid, gender="bogus")
    )
    assert response.status_code == (400 if refuses else 201)
    if refuses:
        assert "Unknown AdministrativeGender code 'bogus'" in response.text
    dangling = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{new_id('missing')}"},
    }
    response = post_bundle(http, fhir_server, "transaction", [put(dangling)])
    assert response.status_code == (400 if refuses else 200)
    if refuses:
        assert "not found, specified in path: Observation.subject" in response.text


def test_a_batch_reports_each_entry(fhir_server: FhirServer, http, system):
    good, wrong = new_id("good"), new_id("bad")
    bad = put(patient(system, "bad", id=wrong, birthDate="not-a-date"))
    if fhir_server.name == "hapi":
        # HAPI parses the whole Bundle before it runs an entry: one entry that is not valid FHIR
        # fails the whole batch (400) and nothing is stored. An entry refused when it runs is
        # reported on its own: here a client id of digits only, which HAPI keeps for its own ids.
        response = post_bundle(
            http, fhir_server, "batch", [put(patient(system, "good", id=good)), bad]
        )
        assert response.status_code == 400
        assert "not-a-date" in response.json()["issue"][0]["diagnostics"]
        assert http.get(f"{fhir_server.base_url}/Patient/{good}").status_code == 404
        wrong = str(uuid.uuid4().int)[:15]
        bad = put(patient(system, "bad", id=wrong))
    entries = [put(patient(system, "good", id=good)), bad]
    response = post_bundle(http, fhir_server, "batch", entries)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "batch-response"
    assert [status_code(e) for e in result["entry"]] == [201, 400]
    assert_status_dialect(fhir_server, result["entry"][1], 400)
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert http.get(f"{fhir_server.base_url}/Patient/{good}").status_code == 200
    assert http.get(f"{fhir_server.base_url}/Patient/{wrong}").status_code == 404


def test_conditional_update_by_identifier(fhir_server: FhirServer, http, system):
    url = f"{fhir_server.base_url}/Patient?identifier={system}|c1"
    first = http.put(url, json=patient(system, "c1", gender="female"))
    assert first.status_code == 201, first.text
    second = http.put(url, json=patient(system, "c1", gender="male"))
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    [entry] = search(http, fhir_server, "Patient", identifier=f"{system}|c1")["entry"]
    assert entry["resource"]["gender"] == "male"

    for twin in (new_id("twin"), new_id("twin")):
        url = f"{fhir_server.base_url}/Patient/{twin}"
        assert http.put(url, json=patient(system, "c2", id=twin)).status_code == 201
    several = http.put(
        f"{fhir_server.base_url}/Patient?identifier={system}|c2", json=patient(system, "c2")
    )
    assert several.status_code == 412
    assert several.json()["resourceType"] == "OperationOutcome"


def test_conditional_update_with_a_client_id_and_no_match(fhir_server: FhirServer, http, system):
    """R4 lets a server either create with the client's id or refuse: sekmet creates, Medplum refuses
    with 400, and HAPI creates under an id of its own, dropping the client's. A client that upserts
    by identifier must leave the id out."""
    pid = new_id("cond")
    response = http.put(
        f"{fhir_server.base_url}/Patient?identifier={system}|x", json=patient(system, "x", id=pid)
    )
    if fhir_server.name == "sekmet":
        assert response.status_code == 201
        assert response.json()["id"] == pid
    elif fhir_server.name == "hapi":
        assert response.status_code == 201
        assert response.json()["id"] not in ("", pid)
    else:
        assert response.status_code == 400
        assert "client-assigned ID" in response.text


def test_conditional_updates_in_one_transaction(fhir_server: FhirServer, http, system):
    """Medplum runs a transaction with conditional entries at serializable isolation and refuses one of
    more than 8 entries (400); sekmet and HAPI take them. A client pushing conditional updates to Medplum must
    send them in transactions of at most 8 entries."""
    entries = [
        put(patient(system, str(n)), url=f"Patient?identifier={system}|{n}") for n in range(9)
    ]
    response = post_bundle(http, fhir_server, "transaction", entries[:8])
    assert response.status_code == 200, response.text
    response = post_bundle(http, fhir_server, "transaction", entries)
    if fhir_server.name == "medplum":
        assert response.status_code == 400
        assert "too many entries" in response.text
    else:
        assert response.status_code == 200
        assert [status_code(e) for e in response.json()["entry"]] == [200] * 8 + [201]


def test_updates_in_one_transaction(fhir_server: FhirServer, http, system):
    """Medplum refuses a transaction of more than 50 updates (400); sekmet and HAPI take them. Creates
    (POST) and batches have no such limit on any of them."""
    entries = [put(patient(system, str(n), id=new_id(f"u{n}"))) for n in range(51)]
    assert post_bundle(http, fhir_server, "transaction", entries[:50]).status_code == 200
    response = post_bundle(http, fhir_server, "transaction", entries)
    if fhir_server.name == "medplum":
        assert response.status_code == 400
        assert "more update operations than allowed" in response.text
    else:
        assert response.status_code == 200
        assert [status_code(e) for e in response.json()["entry"]] == [200] * 50 + [201]


def test_delete_then_read_is_gone(fhir_server: FhirServer, http, system):
    pid = new_id("gone")
    url = f"{fhir_server.base_url}/Patient/{pid}"
    assert http.put(url, json=patient(system, "1", id=pid)).status_code == 201
    deleted = http.delete(url)
    assert deleted.status_code in (200, 204)
    gone = http.get(url)
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert search(http, fhir_server, "Patient", identifier=f"{system}|1")["total"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        pytest.param("GET", "Patient/does-not-exist", None, 404, id="unknown-id"),
        pytest.param("POST", "Patient", b"{not json", 400, id="not-json"),
        pytest.param(
            "PUT", "Patient/a", b'{"resourceType": "Patient", "id": "b"}', 400, id="id-mismatch"
        ),
    ],
)
def test_errors_are_operation_outcomes(fhir_server: FhirServer, http, method, path, body, code):
    response = http.request(method, f"{fhir_server.base_url}/{path}", data=body)
    assert response.status_code == code
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "OperationOutcome"


def public_jwk(alg: str, private_key: Any) -> dict[str, Any]:
    return json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private_key.public_key()))


def test_sekmet_issues_smart_backend_services_tokens(tmp_path: Path, http: requests.Session):
    """The recipe for SMART tests: register a client with its public JWKS in sekmet's settings, sign a
    client assertion (RS384 or ES384) for the token endpoint that .well-known/smart-configuration
    names, and send the access token it returns. Without a token the FHIR API answers 401."""
    keys = {
        "RS384": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
    }
    clients = [
        {
            "client_id": f"fhir-admsc-{alg}",
            "jwks": {"keys": [{**public_jwk(alg, key), "kid": alg, "alg": alg}]},
            "scopes": "system/*.read system/*.write",
        }
        for alg, key in keys.items()
    ]
    auth = {"types": ["smart"], "smart_clients": clients}
    with running_sekmet(tmp_path, server_auth=auth) as server:
        assert http.get(f"{server.base_url}/Patient").status_code == 401
        smart = http.get(f"{server.base_url}/.well-known/smart-configuration")
        config = smart.json()
        assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
        for alg, key in keys.items():
            client_id = f"fhir-admsc-{alg}"
            claims = {
                "iss": client_id,
                "sub": client_id,
                "aud": config["token_endpoint"],
                "exp": int(time.time()) + 240,  # sekmet refuses more than 5 minutes ahead
                "jti": uuid.uuid4().hex,
            }
            assertion = jwt.encode(claims, key, algorithm=alg, headers={"kid": alg})
            form = {
                "grant_type": "client_credentials",
                "scope": "system/*.read",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            }
            # a form, not FHIR JSON: outside the session and its Content-Type
            token = requests.post(config["token_endpoint"], data=form, timeout=TIMEOUT)
            assert token.status_code == 200, token.text
            assert token.json()["scope"] == "system/*.read"
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert http.get(f"{server.base_url}/Patient", headers=bearer).status_code == 200
            written = http.put(
                f"{server.base_url}/Patient/x",
                json={"resourceType": "Patient", "id": "x"},
                headers=bearer,
            )
            assert written.status_code == 403  # the token carries the read scope only
