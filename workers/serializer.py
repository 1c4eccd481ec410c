"""A msgpack serializer for RQ job payloads and results: data only, never pickle."""

from __future__ import annotations

from typing import Any

import msgpack


class MsgpackSerializer:
    """``rq worker --serializer workers.serializer.MsgpackSerializer``.

    Job data is RQ's ``(func_name, instance, args, kwargs)`` tuple; evoq's payloads are plain
    maps, so nothing but data crosses Redis. Bytes that are not msgpack (a pickled payload, for
    one) fail to load, and RQ fails the job without running anything.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        """Pack plain data (tuples are packed as arrays)."""
        data: bytes = msgpack.packb(obj, use_bin_type=True)
        return data

    @staticmethod
    def loads(data: bytes) -> Any:
        """Unpack; arrays come back as lists, maps need string keys."""
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
