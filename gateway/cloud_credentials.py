"""The Bedrock and Vertex credentials: read once at start like the Anthropic one (a file per
name in the secrets directory, else the environment), applied to each forwarded request.

- Bedrock: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``;
  region ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``. Each request is signed
  with SigV4 (service ``bedrock``) by botocore, afresh on every retry.
- Vertex: ``GOOGLE_OAUTH_ACCESS_TOKEN``, an OAuth access token sent as ``Authorization: Bearer``.
  The gateway does not mint or refresh it (no service-account flow): such a token lives about an
  hour, so whoever starts the gateway must renew the file and restart it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .credentials import Credential, _read_file

DEFAULT_AWS_REGION = "us-east-1"
VERTEX_TOKEN_NAME = "GOOGLE_OAUTH_ACCESS_TOKEN"


@dataclass(frozen=True)
class AwsCredential:
    """An AWS key pair and region; ``repr`` never shows the secret or the session token."""

    access_key_id: str
    """``AWS_ACCESS_KEY_ID``."""
    secret_access_key: str
    """``AWS_SECRET_ACCESS_KEY``."""
    region: str
    """The region whose Bedrock endpoint is called and whose name the signature carries."""
    session_token: str | None = None
    """``AWS_SESSION_TOKEN`` of temporary credentials."""

    name = "AWS_ACCESS_KEY_ID"

    def __repr__(self) -> str:
        return f"AwsCredential(region={self.region!r}, secret=<hidden>)"

    __str__ = __repr__

    def apply(self, headers: dict[str, str]) -> None:
        """Nothing to add before signing (the signature is made per send by :meth:`sign`)."""

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """``headers`` plus ``x-amz-date``, ``x-amz-security-token`` and ``authorization``."""
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        credentials = Credentials(self.access_key_id, self.secret_access_key, self.session_token)
        SigV4Auth(credentials, "bedrock", self.region).add_auth(request)
        return {k.lower(): v for k, v in request.headers.items()}


def _value(name: str, secrets_dir: Path, env: Mapping[str, str]) -> str:
    return _read_file(secrets_dir / name) or env.get(name, "").strip()


def read_aws_credential(secrets_dir: Path, env: Mapping[str, str]) -> AwsCredential | None:
    """The AWS key pair if both halves are found, else None (Bedrock requests are refused)."""
    key_id = _value("AWS_ACCESS_KEY_ID", secrets_dir, env)
    secret = _value("AWS_SECRET_ACCESS_KEY", secrets_dir, env)
    if not key_id or not secret:
        return None
    region = (_value("AWS_REGION", secrets_dir, env) or _value("AWS_DEFAULT_REGION", secrets_dir, env)
              or DEFAULT_AWS_REGION)
    return AwsCredential(key_id, secret, region, _value("AWS_SESSION_TOKEN", secrets_dir, env) or None)


def read_vertex_credential(secrets_dir: Path, env: Mapping[str, str]) -> Credential | None:
    """Vertex's OAuth access token, or None (Vertex requests are refused)."""
    token = _value(VERTEX_TOKEN_NAME, secrets_dir, env)
    return Credential(VERTEX_TOKEN_NAME, token) if token else None  # sent as Bearer


NO_AWS_CREDENTIAL = (
    "the gateway holds no AWS credential for Bedrock; give it AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (and AWS_REGION)"
)
NO_VERTEX_CREDENTIAL = (
    f"the gateway holds no Vertex credential; give it {VERTEX_TOKEN_NAME} (an OAuth access "
    "token, e.g. from `gcloud auth print-access-token`)"
)
