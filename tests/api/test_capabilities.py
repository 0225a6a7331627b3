"""CapabilityStatement at /metadata, generated from what the server serves."""

from __future__ import annotations

import httpx

from fhir_server.permissions import Caller, Role
from fhir_server.resources import SERVED_TYPES
from tests.conftest import client_as, parse, post, unique


async def test_metadata_is_an_r4_capability_statement(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"


async def test_metadata_lists_every_supported_type_and_no_other(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert [r["type"] for r in cs["rest"][0]["resource"]] == list(SERVED_TYPES)


async def test_metadata_lists_search_parameters_from_the_registry(client: httpx.AsyncClient, services) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    observation = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in observation["searchParam"]}
    registry = services.search_parameters
    params = registry.for_type("Observation")
    assert names == {code for code, p in params.items() if registry.evaluable(p, "Observation")} | {
        "_has", "_list", "_filter"}
    assert {"code", "subject", "date", "value-quantity", "code-value-quantity"} <= names
    assert not {"_text", "_content", "_query"} & names  # R4 defines them without an expression: not evaluated


async def test_metadata_lists_has_and_list_as_special_parameters_of_every_type(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    for resource in cs["rest"][0]["resource"]:
        special = {p["name"]: p["type"] for p in resource["searchParam"] if p["name"] in ("_has", "_list")}
        assert special == {"_has": "special", "_list": "special"}, resource["type"]


async def test_metadata_lists_system_interactions(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    codes = {i["code"] for i in cs["rest"][0]["interaction"]}
    assert codes == {"transaction", "batch", "search-system", "history-system"}


async def test_metadata_operations_match_the_operation_registry(client: httpx.AsyncClient, services) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    listed = {o["name"] for o in cs["rest"][0]["operation"]}
    for r in cs["rest"][0]["resource"]:
        listed |= {o["name"] for o in r["operation"]}
    assert listed == {spec.name for spec in services.operations.all()}


async def test_metadata_lists_the_registry_operations(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    system = {o["name"] for o in cs["rest"][0]["operation"]}
    by_type = {r["type"]: {o["name"] for o in r["operation"]} for r in cs["rest"][0]["resource"]}
    assert {"registry-report", "export", "reindex"} <= system
    assert {"everything", "risk-scores", "export", "validate"} <= by_type["Patient"]
    assert {"export", "cohort"} <= by_type["Group"]
    assert {"lookup", "subsumes", "validate-code"} <= by_type["CodeSystem"]
    assert {"expand", "validate-code"} <= by_type["ValueSet"]
    assert "translate" in by_type["ConceptMap"]


# The operations R4 itself defines that this server offers (operationslist.html): only these may name an
# OperationDefinition in HL7's namespace; the server's own ($reindex, $risk-scores, the bulk polling) name theirs
# in the registry's
HL7_OPERATIONS = {"meta", "meta-add", "meta-delete", "validate", "everything", "lastn", "expand", "lookup",
                  "validate-code", "subsumes", "translate", "versions", "match"}


async def test_metadata_names_no_hl7_definition_for_the_servers_own_operations(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    operations = [*cs["rest"][0]["operation"], *(o for r in cs["rest"][0]["resource"] for o in r["operation"])]
    claimed = {o["name"] for o in operations if o["definition"].startswith("http://hl7.org/fhir/OperationDefinition/")}
    assert claimed <= HL7_OPERATIONS
    own = {o["name"]: o["definition"] for o in operations}
    assert own["risk-scores"] == "https://cml-registry.eu/fhir/OperationDefinition/risk-scores"
    assert own["reindex"] == "https://cml-registry.eu/fhir/OperationDefinition/reindex"


# -- GET metadata?mode= (https://hl7.org/fhir/R4/http.html#capabilities) ------------------------------------


async def test_mode_full_is_the_capability_statement(client: httpx.AsyncClient) -> None:
    assert parse(await client.get("/fhir/metadata?mode=full")) == parse(await client.get("/fhir/metadata"))


async def test_mode_terminology_is_the_terminology_capabilities(client: httpx.AsyncClient) -> None:
    """The code systems the terminology operations know: R4's own and the published ones, with their versions."""
    system = f"urn:test:cs:{unique()}"
    code_system = {"resourceType": "CodeSystem", "url": system, "version": "2", "status": "active",
                   "content": "complete", "concept": [{"code": "a"}]}
    created = await post(client, "CodeSystem", code_system)
    assert created.status_code == 201, created.text
    response = await client.get("/fhir/metadata?mode=terminology")
    assert response.status_code == 200, response.text
    capabilities = parse(response)
    assert capabilities["resourceType"] == "TerminologyCapabilities"
    assert capabilities["kind"] == "instance" and capabilities["status"] == "active"
    known = {c["uri"]: c for c in capabilities["codeSystem"]}
    assert known[system]["version"] == [{"code": "2"}]
    assert "http://hl7.org/fhir/administrative-gender" in known  # R4's own
    assert "http://terminology.hl7.org/CodeSystem/v2-0203" in known
    assert capabilities["expansion"]["paging"] is True
    assert {p["name"] for p in capabilities["expansion"]["parameter"]} == {"filter", "count", "offset"}


async def test_an_unknown_mode_and_normative_are_400(client: httpx.AsyncClient) -> None:
    for mode in ("normative", "everything"):
        response = await client.get(f"/fhir/metadata?mode={mode}")
        assert response.status_code == 400, response.text
        assert parse(response)["issue"][0]["expression"] == ["mode"]


async def test_every_own_operation_definition_resolves_on_the_server(client: httpx.AsyncClient, services) -> None:
    """A client resolves a canonical the statement names by searching its url (references.html#canonical): the
    registry's own operations are defined by OperationDefinitions the server serves, true to what it runs."""
    cs = parse(await client.get("/fhir/metadata"))
    listed = [(o, None) for o in cs["rest"][0]["operation"]]
    listed += [(o, r["type"]) for r in cs["rest"][0]["resource"] for o in r["operation"]]
    own = {o["definition"] for o, _ in listed if o["definition"].startswith("https://cml-registry.eu/")}
    assert len(own) == 8
    for url in own:
        found = parse(await client.get("/fhir/OperationDefinition", params={"url": url}))
        assert found["total"] == 1, url
        definition = found["entry"][0]["resource"]
        specs = [s for s in services.operations.all() if s.definition == url or
                 (s.definition is None and url.endswith(f"/{s.name}"))]
        assert {s.name for s in specs} == {definition["code"]}, url
        levels = set().union(*(s.levels for s in specs))
        assert {level for level in ("system", "type", "instance") if definition[level]} == levels, url
        types = {t for s in specs for t in (s.types or {"Resource"})} if levels - {"system"} else set()
        assert set(definition.get("resource", [])) == types, url


async def test_an_ehr_reads_but_cannot_write_an_operation_definition(services) -> None:
    async with client_as(services, Caller(id=unique("ehr-"), role=Role.EHR, center="FR-POI")) as c:
        assert (await c.get("/fhir/OperationDefinition/risk-scores")).status_code == 200
        definition = {"resourceType": "OperationDefinition", "name": "Mine", "status": "draft",
                      "kind": "operation", "code": "mine", "system": True, "type": False, "instance": False}
        assert (await c.post("/fhir/OperationDefinition", json=definition)).status_code == 403


async def test_metadata_instantiates_the_bulk_data_statement(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert cs["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]


async def test_the_registry_server_names_its_guide_and_the_profiles_its_rules_require(
        registry_client: httpx.AsyncClient) -> None:
    cs = parse(await registry_client.get("/fhir/metadata"))
    assert cs["implementationGuide"] == ["https://cml-registry.eu/fhir/ImplementationGuide/ifp"]
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert by_type["Patient"]["supportedProfile"] == ["https://cml-registry.eu/fhir/StructureDefinition/ifp-patient"]
    assert {"https://cml-registry.eu/fhir/StructureDefinition/ifp-imatinib",
            "https://cml-registry.eu/fhir/StructureDefinition/ifp-subsequent-therapy"} <= set(
        by_type["MedicationStatement"]["supportedProfile"])
    assert "supportedProfile" not in by_type["Encounter"]
    guide = parse(await registry_client.get("/fhir/ImplementationGuide",
                                            params={"url": cs["implementationGuide"][0]}))
    assert guide["total"] == 1  # the canonical resolves on the server
    for resource in by_type.values():  # and so does every profile named
        for url in resource.get("supportedProfile", []):
            found = parse(await registry_client.get("/fhir/StructureDefinition", params={"url": url}))
            assert found["total"] == 1, url


async def test_a_plain_fhir_server_claims_no_registry_guide_or_profile(client: httpx.AsyncClient) -> None:
    cs = parse(await client.get("/fhir/metadata"))
    assert "implementationGuide" not in cs
    assert not any("supportedProfile" in r for r in cs["rest"][0]["resource"])
