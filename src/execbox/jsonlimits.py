"""Counting the values of a JSON document, cheaply.

Parsing JSON into pydantic models holds the interpreter lock from the first byte to the
last, so a body of millions of tiny values (``[0,0,0,...]``) stalls the server's event
loop for about a second per 10 MB, whichever thread parses it. ``api/bodies.py`` counts
first: ``upper_bound`` in place (it settles most bodies), ``json_values`` in a separate
process for the rest. This module imports nothing but the standard library.
"""

from __future__ import annotations

import re

# A JSON string: quotes around anything but quotes and backslashes, or escapes.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def upper_bound(body: bytes) -> int:
    """At least ``json_values(body)``: punctuation inside strings counts too."""
    return 1 + body.count(b",") + body.count(b"[") + body.count(b":")


def json_values(body: bytes) -> int:
    """The values (objects, arrays, strings, numbers...) and object members of ``body``,
    counted by their punctuation outside strings: every value but the first follows a
    comma, an array's ``[`` or a key's colon (a member also follows a comma). What
    parsing costs grows with this count. For a body that is not JSON it is an estimate
    that parsing will refuse anyway."""
    return upper_bound(_STRING.sub(b'""', body))
