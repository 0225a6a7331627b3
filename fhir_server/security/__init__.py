"""Who may do what (issue #11): SMART App Launch 2.x Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html) and the registry's roles.

Domain code, no HTTP framework: ``api/`` calls it for the token endpoint, the discovery documents and the bearer
token of every request; ``interactions/authorization.py`` asks it whether a scope and a role allow an
interaction. What it keeps in MongoDB (the server's signing keys, the client assertions already seen) goes
through ``storage/security_store.py``.
"""
