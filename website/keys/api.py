"""JSON API of API keys, for operators: ``/api/keys``.

* ``POST /api/keys {"name", "quota": {"jobs", "bytes", "snippets", "rate"}}``: 201
  with the key's record and ``key``, its text, shown this once (only its hash is
  stored); 400 naming each bad field.
* ``GET /api/keys``: every key, revoked ones too, never the key nor its hash.
* ``DELETE /api/keys/<id>``: revoke it (200 with its record; 404 unknown). It is
  refused at once; its record stays, so its name still labels its jobs.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from shared.apikeys import create_key, list_keys, revoke_key
from shared.errors import Invalid
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.body import read_json_body

bp = Blueprint("keys_api", __name__, url_prefix="/api")
BODY_MAX = 4 * 1024
FIELDS = ("name", "quota")


@bp.before_request
def _operators_only() -> Response | None:
    return None if ops_allowed() else ops_challenge()


def no_store(response: Response) -> Response:
    """An answer that carries a key's text: never cached."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/keys")
def create() -> tuple[Response, int]:
    """Create a key: 201 with its id, name, owner, quota and ``key`` (shown once)."""
    body = read_json_body(BODY_MAX)
    if not isinstance(body, dict):
        raise Invalid('body must be a JSON object {"name", "quota"}')
    unknown = {str(name)[:40]: "unknown field: name or quota" for name in body
               if name not in FIELDS}
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}", unknown)
    key, text = create_key(core.client, body.get("name"), body.get("quota"))
    return no_store(jsonify({**key.to_json(), "key": text})), 201


@bp.get("/keys")
def list_all() -> Response:
    """Every key, oldest first (``id``, ``name``, ``owner``, ``createdAt``, ``revoked``,
    ``revokedAt``, ``quota``)."""
    return jsonify({"keys": [key.to_json() for key in list_keys(core.client)]})


@bp.delete("/keys/<key_id>")
def revoke(key_id: str) -> Response:
    """Revoke a key: 200 with its record (``revoked``: true); 404 for an unknown id."""
    return jsonify(revoke_key(core.client, key_id).to_json())
