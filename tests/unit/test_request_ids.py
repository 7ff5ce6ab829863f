"""Request ids: canonical random UUIDs."""

from __future__ import annotations

import uuid

from zonecat.api.middleware import new_request_id


def test_request_ids_are_canonical_version_4_uuids() -> None:
    seen = set()
    variants = set()
    for _ in range(5000):
        text = new_request_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        variants.add(text[19])
        seen.add(text)
    assert len(seen) == 5000
    assert variants == set("89ab")
