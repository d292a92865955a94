"""The scripted model's Bedrock and Vertex modes: the paths Claude Code calls when
``CLAUDE_CODE_USE_BEDROCK`` / ``CLAUDE_CODE_USE_VERTEX`` is set, answered from the same scenarios.

- Bedrock: ``POST /model/{id}/invoke`` (one JSON message) and
  ``/model/{id}/invoke-with-response-stream`` (an AWS event stream of ``chunk`` messages), and
  ``GET /inference-profiles`` (an empty list). With a key pair configured, every Bedrock request
  must carry a SigV4 signature (service ``bedrock``) made with it, recomputed here with botocore;
  otherwise 403 ``InvalidSignatureException``.
- Vertex: ``POST [/v1]/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:streamRawPredict``
  (SSE, as ``/v1/messages``), ``:rawPredict`` (JSON) and ``.../models/count-tokens:rawPredict``.
  With a token configured, the request must carry it as ``Authorization: Bearer``; else 401.

Errors in Bedrock mode are AWS-shaped: ``{"message": ...}`` with ``x-amzn-errortype``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conversation import read_conversation
from .eventstream import chunk_message
from .replies import ErrorReply, encode_event, error_body, message_json, plan_reply, stream_events

BEDROCK_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream)$")
VERTEX_PATH = re.compile(
    r"^(?:/v1)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<action>rawPredict|streamRawPredict)$"
)
EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"
MAX_CLOCK_SKEW_S = 15 * 60


@dataclass(frozen=True)
class AwsKey:
    """The key pair (and session token) a Bedrock request must be signed with."""

    access_key_id: str
    """``AWS_ACCESS_KEY_ID``."""
    secret_access_key: str
    """``AWS_SECRET_ACCESS_KEY``."""
    region: str = "us-east-1"
    """The region the signature's scope must name."""
    session_token: str | None = None
    """``AWS_SESSION_TOKEN``, required as ``x-amz-security-token`` when set."""


def sigv4_refusal(key: AwsKey, method: str, url: str, headers: Mapping[str, str], body: bytes,
                  now: float | None = None) -> str | None:
    """Why the request's SigV4 signature is not one ``key`` made (one sentence), or None."""
    lower = {k.lower(): v for k, v in headers.items()}
    scheme, _, rest = lower.get("authorization", "").partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return "the request carries no AWS4-HMAC-SHA256 signature"
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    scope = fields.get("Credential", "").split("/")
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    if len(scope) != 5 or scope[0] != key.access_key_id:
        return "the signature names another access key"
    if scope[2:4] != [key.region, "bedrock"]:
        return f"the signature's scope is not {key.region}/bedrock"
    if "host" not in signed or any(h not in lower for h in signed):
        return "a signed header is missing"
    amz_date = lower.get("x-amz-date", "")
    try:
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return "the x-amz-date header is missing or malformed"
    if abs((time.time() if now is None else now) - signed_at) > MAX_CLOCK_SKEW_S:
        return "the signature is older than 15 minutes"
    if key.session_token is not None and lower.get("x-amz-security-token") != key.session_token:
        return "the session token is wrong"
    claimed_hash = lower.get("x-amz-content-sha256")
    if claimed_hash is not None and claimed_hash != hashlib.sha256(body).hexdigest():
        return "the payload hash does not match the body"
    request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret_access_key,
                                   lower.get("x-amz-security-token")), "bedrock", key.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields.get("Signature", "")):
        return "the signature does not match the request"
    return None


class CloudRoutes:
    """Mixed into the request handler: answers the Bedrock and Vertex paths."""

    # provided by the handler
    server: Any
    headers: Any
    command: str
    path: str
    raw_body: bytes

    def _send_json(self, status: int, payload: Any, record: Any,
                   headers: dict[str, str] | None = None) -> None:
        raise NotImplementedError

    def _send_chunked(self, record: Any, content_type: str, chunks: Iterable[bytes]) -> None:
        raise NotImplementedError

    def cloud_route(self, record: Any, route: str) -> bool:
        """Answer ``record`` if ``route`` is a Bedrock or Vertex path; whether it was."""
        if self.command == "GET" and route == "/inference-profiles":
            if self._bedrock_admitted(record):
                record.kind = "inference_profiles"
                self._send_json(200, {"inferenceProfileSummaries": []}, record)
            return True
        if self.command == "POST" and (match := BEDROCK_PATH.match(route)):
            if self._bedrock_admitted(record) and not self._rate_limited_aws(record):
                self._cloud_messages(record, "bedrock", unquote(match["model"]),
                                     match["action"] == "invoke-with-response-stream")
            return True
        if self.command == "POST" and (match := VERTEX_PATH.match(route)):
            if self._vertex_admitted(record):
                if match["model"] == "count-tokens":
                    record.kind = "count_tokens"
                    tokens = max(1, len(json.dumps(record.body)) // 4)
                    self._send_json(200, {"input_tokens": tokens}, record)
                else:
                    self._cloud_messages(record, "vertex", match["model"],
                                         match["action"] == "streamRawPredict")
            return True
        return False

    def _bedrock_admitted(self, record: Any) -> bool:
        key: AwsKey | None = self.server.owner.aws_key
        if key is None:
            return True
        url = f"http://{self.headers.get('host', '')}{self.path}"
        refusal = sigv4_refusal(key, self.command, url, dict(self.headers.items()), self.raw_body)
        if refusal is None:
            return True
        record.kind = "auth_error"
        self._aws_error(record, 403, "InvalidSignatureException", f"scripted model: {refusal}")
        return False

    def _vertex_admitted(self, record: Any) -> bool:
        wanted: str | None = self.server.owner.vertex_token
        if wanted is None:
            return True
        scheme, _, given = (self.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), wanted.encode()):
            return True
        record.kind = "auth_error"
        message = "scripted model: the Vertex access token was wrong"
        self._send_json(401, {"error": {"code": 401, "message": message,
                                        "status": "UNAUTHENTICATED"}}, record)
        return False

    def _rate_limited_aws(self, record: Any) -> bool:
        owner = self.server.owner
        if not owner.take_rate_limit():
            return False
        record.kind = "rate_limited"
        self._aws_error(record, 429, "ThrottlingException",
                        "scripted model: rate limited (--rate-limit-first)",
                        {"retry-after": f"{owner.retry_after_s:g}"})
        return True

    def _aws_error(self, record: Any, status: int, kind: str, message: str,
                   headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"message": message}, record,
                        {"x-amzn-errortype": kind, **(headers or {})})

    def _cloud_messages(self, record: Any, cloud: str, model: str, streamed: bool) -> None:
        body = dict(record.body) if isinstance(record.body, dict) else {}
        body["model"] = model
        conversation = read_conversation(body, dict(self.headers.items()))
        reply, record.scenario = plan_reply(self.server.owner.book, conversation, body)
        record.kind = "side" if conversation.side_kind else "turn"
        record.turn, record.prompt = conversation.turn, conversation.prompt
        if isinstance(reply, ErrorReply):
            message = str(reply.body.get("error", {}).get("message", "error"))
            if cloud == "bedrock":
                self._aws_error(record, reply.status, "ValidationException", message)
            else:
                self._send_json(reply.status, error_body("api_error", message), record)
            return
        record.stop_reason = reply.stop_reason
        record.tool_names = [b["name"] for b in reply.content if b["type"] == "tool_use"]
        if reply.delay_s:
            self.server.owner.stopping.wait(reply.delay_s)
        usage = reply.usage
        if not streamed:
            headers = {"x-amzn-bedrock-input-token-count": str(usage.input_tokens),
                       "x-amzn-bedrock-output-token-count": str(usage.output_tokens)}
            self._send_json(200, message_json(reply), record, headers if cloud == "bedrock" else None)
        elif cloud == "vertex":
            self._send_chunked(record, "text/event-stream; charset=utf-8",
                               (encode_event(name, data) for name, data in stream_events(reply)))
        else:
            metrics = {"inputTokenCount": usage.input_tokens, "outputTokenCount": usage.output_tokens,
                       "invocationLatency": 1, "firstByteLatency": 1}

            def chunks() -> Iterable[bytes]:
                for _, data in stream_events(reply):
                    if data["type"] == "message_stop":
                        data = {**data, "amazon-bedrock-invocationMetrics": metrics}
                    yield chunk_message(data)

            self._send_chunked(record, EVENTSTREAM_TYPE, chunks())
