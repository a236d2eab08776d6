"""Every REST call checked against Discord's own OpenAPI spec (``shared/discord-api-spec``).

A hand-written simulator accepts whatever its author thought of; Discord refuses a route
it does not have (404) and a body its schema refuses (400, code 50035). :class:`DiscordSpec`
matches a request to the spec's path templates and method, and validates its JSON body (or
the ``payload_json`` part of a multipart body) and query parameters with ``jsonschema``
(Draft 2020-12), the spec's ``$ref``s resolved through a ``referencing`` registry.

Two things discord.py sends that the spec does not name but Discord accepts are allowed
explicitly: snowflakes as JSON integers (``message_reference`` ids, ids of new attachments).

The spec also says who may call a route (``security``: the bot token, or an OAuth2 bearer
token with one of the listed scopes), names the OAuth2 flow's URLs and scopes
(``components.securitySchemes.OAuth2``), and gives each answer's schema, against which the
simulator checks its own answers (:meth:`DiscordSpec.response_errors`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
SPEC_URI = "urn:discord-api-spec"
METHODS = ("get", "put", "post", "patch", "delete")


def spec_path() -> Path:
    """``DISCORD_API_SPEC`` or ``shared/discord-api-spec/openapi.json`` beside the checkout."""
    override = os.environ.get("DISCORD_API_SPEC")
    if override:
        return Path(override)
    for base in (ROOT.parent, *ROOT.parents):
        candidate = base / "shared" / "discord-api-spec" / "openapi.json"
        if candidate.is_file():
            return candidate
    return ROOT.parent / "shared" / "discord-api-spec" / "openapi.json"


@dataclass(frozen=True)
class SpecViolation:
    """A request Discord would refuse: ``status``/``code`` are what Discord answers."""

    method: str
    path: str
    status: int
    code: int
    message: str
    errors: tuple[tuple[str, str], ...] = ()  # (where, what is wrong)

    def __str__(self) -> str:
        detail = "; ".join(f"{where}: {what}" for where, what in self.errors)
        return f"{self.method} {self.path}: {self.message}" + (f" ({detail})" if detail else "")

    def error_body(self) -> dict[str, Any]:
        """Discord's ``errors`` object: ``{field: {"_errors": [{code, message}]}}``."""
        return {
            where: {"_errors": [{"code": "SPEC_INVALID", "message": what}]}
            for where, what in self.errors
        }


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]

    @property
    def bot_token(self) -> bool:
        """A bot token may call it."""
        return any("BotToken" in req for req in self.spec.get("security", ()))

    @property
    def oauth2_scopes(self) -> frozenset[str]:
        """A bearer token holding any one of these scopes may call it (empty: none may).

        The spec lists one requirement per route; for ``/oauth2/@me`` it lists every scope,
        which Discord means as "any of them", so the scopes are read as alternatives."""
        scopes: set[str] = set()
        for req in self.spec.get("security", ()):
            scopes.update(req.get("OAuth2", ()))
        return frozenset(scopes)


def _rewrite_refs(node: Any) -> Any:
    """``#/components/...`` -> ``urn:discord-api-spec#/components/...`` (one registered
    document, so a sub-schema's references resolve wherever it is validated from)."""
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = SPEC_URI + ref
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{pattern}$")


class DiscordSpec:
    """The spec's routes and request schemas, ready to check requests against."""

    def __init__(self, document: dict[str, Any]) -> None:
        document = _rewrite_refs(document)
        schemas = document["components"]["schemas"]
        # discord.py sends some snowflakes as JSON integers; Discord accepts them.
        schemas["SnowflakeType"] = {
            "anyOf": [schemas["SnowflakeType"], {"type": "integer", "minimum": 0}]
        }
        self.document = document
        resource = DRAFT202012.create_resource(document)
        self.registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            SPEC_URI, resource
        )
        self.routes: list[tuple[re.Pattern[str], int, str]] = []
        self.operations: dict[tuple[str, str], Operation] = {}
        for template, item in document["paths"].items():
            shared = tuple(item.get("parameters", ()))
            for method in METHODS:
                if method in item:
                    op = item[method]
                    params = shared + tuple(op.get("parameters", ()))
                    self.operations[(template, method)] = Operation(template, method, op, params)
            # a literal segment beats a parameter: /messages/@original before /{message_id}
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            self.routes.append((_template_regex(template), literal, template))
        self.routes.sort(key=lambda r: -r[1])
        self._validators: dict[int, jsonschema.protocols.Validator] = {}
        flows = document["components"]["securitySchemes"]["OAuth2"]["flows"]
        code_flow = flows["authorizationCode"]
        #: the authorization-code flow's URLs, as paths (``/api/oauth2/authorize``...)
        self.authorize_path = urlsplit(code_flow["authorizationUrl"]).path
        self.token_path = urlsplit(code_flow["tokenUrl"]).path
        #: every scope the authorization-code flow knows
        self.oauth2_scopes = frozenset(code_flow["scopes"])

    def match(self, method: str, path: str) -> tuple[Operation | None, str | None]:
        """The operation for ``method path`` (path without the ``/api/v10`` prefix), or
        ``(None, reason)``."""
        templates = [t for regex, _, t in self.routes if regex.match(path)]
        if not templates:
            return None, "no such route in Discord's API"
        for template in templates:
            op = self.operations.get((template, method.lower()))
            if op is not None:
                return op, None
        return None, f"{method} is not a method of {templates[0]}"

    def _validator(self, schema: dict[str, Any]) -> jsonschema.protocols.Validator:
        key = id(schema)
        if key not in self._validators:
            self._validators[key] = jsonschema.Draft202012Validator(
                schema,
                registry=self.registry,
                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
            )
        return self._validators[key]

    def check(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        content_type: str,
        body: Any,
        has_body: bool,
    ) -> SpecViolation | None:
        """``None`` when Discord would accept this request, else what it would answer."""
        op, reason = self.match(method, path)
        if op is None:
            return SpecViolation(method, path, 404, 0, "404: Not Found", (("route", str(reason)),))
        errors = list(self._query_errors(op, query))
        request_body = op.spec.get("requestBody")
        if request_body is not None and has_body:
            media = request_body.get("content", {})
            schema_holder = media.get(content_type) or media.get("application/json")
            if schema_holder is None:
                errors.append(("content_type", f"{content_type!r} not accepted"))
            else:
                errors.extend(self._schema_errors(schema_holder["schema"], body, "body"))
        elif request_body is not None and request_body.get("required"):
            errors.append(("body", "required"))
        elif request_body is None and has_body and body not in (None, {}, b""):
            errors.append(("body", "this route takes none"))
        if errors:
            return SpecViolation(method, path, 400, 50035, "Invalid Form Body", tuple(errors))
        return None

    def response_errors(
        self, method: str, path: str, status: int, data: Any
    ) -> list[tuple[str, str]]:
        """What is wrong with an answer ``data`` to ``method path`` per the spec's
        ``application/json`` schema for ``status`` (``[]``: nothing)."""
        op, reason = self.match(method, path)
        if op is None:
            return [("route", str(reason))]
        response = op.spec.get("responses", {}).get(str(status))
        if response is None:
            return [("status", f"{status} is not an answer of {op.template}")]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return [] if data is None else [("body", f"{op.template} answers {status} empty")]
        return self._schema_errors(schema, data, "response")

    def _query_errors(self, op: Operation, query: dict[str, str]) -> list[tuple[str, str]]:
        declared = {p["name"]: p for p in op.parameters if p.get("in") == "query"}
        errors = []
        for name, raw in query.items():
            param = declared.get(name)
            if param is None:
                errors.append((f"query {name}", f"not a parameter of {op.template}"))
                continue
            value = _coerce_query(raw, param.get("schema", {}))
            errors.extend(self._schema_errors(param.get("schema", {}), value, f"query {name}"))
        return errors

    def _schema_errors(
        self, schema: dict[str, Any], value: Any, where: str
    ) -> list[tuple[str, str]]:
        validator = self._validator(schema)
        found = []
        for err in validator.iter_errors(value):
            best = _deepest(err)
            location = ".".join(str(p) for p in best.absolute_path)
            message = best.message
            if len(message) > 200:  # the message starts with the (huge) value itself
                message = f"fails {best.validator}: {best.validator_value!r}"[:200]
            found.append((f"{where} {location}".strip(), message))
        return found


def _deepest(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """anyOf/oneOf report one summary. The branch meant is the one whose discriminator
    (``type``) matched; within it, the error deepest in the document says what is wrong."""
    while err.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in err.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        meant = [
            errs
            for errs in branches.values()
            if not any(
                e.validator in ("const", "enum") and list(e.relative_path) == ["type"] for e in errs
            )
        ]
        candidates = [e for errs in meant for e in errs] or list(err.context)
        err = max(candidates, key=lambda e: len(e.absolute_path))
    return err


def _coerce_query(raw: str, schema: dict[str, Any]) -> Any:
    """Query strings as the typed value their schema describes (booleans, integers)."""
    kind = schema.get("type")
    if kind == "boolean":
        lowered = raw.lower()
        return {"true": True, "1": True, "false": False, "0": False}.get(lowered, raw)
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


@cache
def load_spec() -> DiscordSpec:
    """The spec, parsed once per process."""
    path = spec_path()
    with path.open(encoding="utf-8") as fh:
        return DiscordSpec(json.load(fh))
