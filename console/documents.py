"""Publishing a site's signed documents to its gates: the trust bundle and the revocation list.

Both are retained on ``gatepost/v1/<site>/$console/{trust,revocation}``, so a gate gets
the latest on every (re)connect, and a gate that was offline when a pass was revoked
learns of it the moment it is back.  The documents are signed in the site office
(``gatepost pass …``); the console only carries them, and each gate verifies them
against its pinned root key, so neither the broker nor this process is trusted with
their integrity.
"""

from __future__ import annotations

import threading
from pathlib import Path

from protocol.errors import GatepostError
from protocol.messages import MAX_MESSAGE_BYTES
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.topics import SiteDocument, site_document_topic

FILES = {SiteDocument.TRUST: "bundle", SiteDocument.REVOCATION: "revocations"}
"""The file names in the site office's ``public/`` folder."""


class PublishError(GatepostError, RuntimeError):
    """A document could not be read or published."""


def publish_documents(
    endpoint: BrokerEndpoint, site: str, public_dir: Path, *, timeout: float = 10.0
) -> dict[SiteDocument, int]:
    """Publish every document found in ``public_dir`` retained; return the bytes sent per document."""
    documents: dict[SiteDocument, bytes] = {}
    for document, name in FILES.items():
        path = public_dir / name
        if path.exists():
            data = path.read_bytes()
            if len(data) > MAX_MESSAGE_BYTES:
                raise PublishError(
                    f"{path}: {len(data)} bytes, over the {MAX_MESSAGE_BYTES}-byte message limit"
                )
            documents[document] = data
    if not documents:
        raise PublishError(f"{public_dir}: neither {' nor '.join(FILES.values())} found")
    client = make_client(endpoint)  # the caller's connection: console.<name>.publish or .web
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(
        _client: object, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    connect_async(client, endpoint, clean_start=True)
    client.loop_start()
    try:
        if not connected.wait(timeout) or refused:
            raise PublishError(f"cannot connect to {endpoint!r}: {refused[0] if refused else 'timed out'}")
        infos = {
            doc: client.publish(site_document_topic(site, doc), data, qos=QOS, retain=True)
            for doc, data in documents.items()
        }
        for doc, info in infos.items():
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise PublishError(f"{doc.value} was not acknowledged by the broker")
    finally:
        client.disconnect()
        client.loop_stop()
    return {doc: len(data) for doc, data in documents.items()}
