"""OpenAPI 3.1 document built from the declared operations, and a /docs page."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from server.routing import Operation

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")

PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status"],
}


def _schema_ref(model: Any, schemas: dict[str, Any], mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
    """``model``'s JSON schema into ``components.schemas`` (with its sub-models), as a ``$ref``."""
    schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    name = getattr(model, "__name__", None)
    if name is None or not isinstance(model, type):
        return schema  # e.g. list[X]: inline, its items point into components
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # Page[Course] -> Page_Course_ (OpenAPI's name pattern)
    schemas[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def build(operations: list[Operation], *, title: str = "Scriptorium", version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM}
    for number, op in enumerate(operations):
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", op.path)
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"} if name.endswith("id") else {"type": "string"}}
            for name in _PARAM.findall(op.path)
        ]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
                   for n, d in op.query.items()]
        success = _schema_ref(op.response, schemas) if op.response is not None else {"type": "object"}
        responses: dict[str, Any] = {
            str(status): {"description": "Success"} if status == 204 else
            {"description": "Success", "content": {"application/json": {"schema": success}}}
            for status in (op.status, *op.also)
        }
        responses["default"] = {"description": "Problem", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        operation: dict[str, Any] = {
            "summary": op.summary, "tags": [op.tag], "operationId": f"{op.method.lower()}_{op.tag}_{number}",  # unique: links name it
            "parameters": params, "responses": responses, "x-access": op.access.name,
        }
        if op.auth == "user":
            operation["security"] = [{"bearer": []}, {"cookie": []}]
        elif op.auth == "optional":
            operation["security"] = [{}, {"bearer": []}, {"cookie": []}]
        if op.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema_ref(op.body, schemas, mode="validation")}}}
        if op.multipart:
            operation["requestBody"] = {"content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}}}},
                "application/json": {"schema": {"type": "object", "properties": {"url": {"type": "string"}}}},
            }}
        paths.setdefault(path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Learning platform: catalogue, courses, live co-editing, live forum."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "__session"},
            },
        },
    }


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scriptorium API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.m{display:inline-block;width:4.5rem;font-weight:600}.GET{color:#0a7}.POST{color:#06c}.PUT{color:#a60}
.PATCH{color:#a0a}.DELETE{color:#c22}li{list-style:none;margin:.2rem 0}</style></head>
<body><h1>Scriptorium API</h1>
<p>The machine-readable contract is <a href="/openapi.json"><code>/openapi.json</code></a> (OpenAPI 3.1);
load it into any OpenAPI viewer. Every route, grouped by domain:</p>
<div id="routes">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const groups = {};
  for (const [path, ops] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(ops))
      (groups[op.tags[0]] ||= []).push([method.toUpperCase(), path, op.summary]);
  const el = document.getElementById('routes'); el.textContent = '';
  for (const [tag, ops] of Object.entries(groups)) {
    const h = document.createElement('h2'); h.textContent = tag; el.append(h);
    const ul = document.createElement('ul');
    for (const [m, p, s] of ops) {
      const li = document.createElement('li');
      li.innerHTML = `<span class="m ${m}">${m}</span> <code></code> — <span></span>`;
      li.querySelector('code').textContent = p; li.querySelector('span:last-child').textContent = s;
      ul.append(li);
    }
    el.append(ul);
  }
});
</script></body></html>"""
