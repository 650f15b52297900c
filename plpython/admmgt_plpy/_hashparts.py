"""Hash partitions: a fixed set of ``modulus`` children, named ``<parent>_h<remainder>``.

Pure. A hash set never grows: the compiler makes all of its children at once
(``CREATE TABLE`` of the table, or of each range child that maintenance makes
later), and the modulus cannot change without moving every row, so a changed
modulus is a new table and a data move (docs/metadata.md, "Hash partitions").
"""

from __future__ import annotations

from admmgt_plpy._calendar import child_name
from admmgt_plpy._errors import MetadataError

__all__ = ["MAX_MODULUS", "check_modulus", "hash_bound", "hash_child"]

MAX_MODULUS = 256  # more children than this is almost certainly a typo


def check_modulus(value: object, *, what: str) -> int:
    """The modulus of a hash partition set (2 to MAX_MODULUS), or MetadataError."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.isascii() and text.isdigit():
        modulus = int(text)
        if 2 <= modulus <= MAX_MODULUS:
            return modulus
    raise MetadataError(
        f"{what}: {value!r} is not a hash modulus; give the number of hash partitions, "
        f"a whole number from 2 to {MAX_MODULUS}, e.g. '4'"
    )


def hash_child(*parent_parts: str, remainder: int) -> str:
    """The name of the child of remainder ``remainder`` (``orders_h0``, ``orders_2026_10_h3``)."""
    return child_name(*parent_parts, f"h{remainder}")


def hash_bound(modulus: int, remainder: int) -> str:
    return f"FOR VALUES WITH (MODULUS {int(modulus)}, REMAINDER {int(remainder)})"
