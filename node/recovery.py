"""Paper words for a recovery key, and link codes (docs/IDENTITY.md section 5).

A recovery key is made from 16 random bytes (128 bits) written as 16 words of a list of 256,
one word a byte, followed by 2 checksum words: the first two bytes of
``SHA-256("commons-recovery-v1" 0x00 || entropy)``. The key's seed is
``SHA-256("commons-recovery-key-v1" 0x00 || entropy)``. The words are shown once and never
stored: whoever holds them can manage the person's devices, and nothing else.

A link code is 10 random bytes (80 bits) in 16 characters of Crockford's base32, in groups of
four; :func:`protocol.identity_records.ticket_key` turns its bytes into the one-time ticket key.
Both are printed for people to copy by hand, so reading them forgives case, spacing, hyphens
and the letters that look like digits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from protocol.signing import SigningKey

__all__ = [
    "CODE_BYTES",
    "ENTROPY_BYTES",
    "WORDS",
    "RecoveryError",
    "code_bytes",
    "entropy_of",
    "new_code",
    "new_entropy",
    "recovery_key",
    "words_of",
]

ENTROPY_BYTES: Final = 16
CHECK_WORDS: Final = 2
CODE_BYTES: Final = 10
#: Characters of a link code: five bits each.
CODE_CHARS: Final = CODE_BYTES * 8 // 5
_CHECK_DOMAIN: Final = b"commons-recovery-v1\x00"
_KEY_DOMAIN: Final = b"commons-recovery-key-v1\x00"
_BASE32: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOOKALIKES: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})

#: 256 short, common words, no two of them sharing their first four letters, so a word may
#: be typed by its first four letters alone.
WORDS: Final = (
    "acid",
    "acorn",
    "actor",
    "adult",
    "agent",
    "alarm",
    "album",
    "alley",
    "amber",
    "anchor",
    "angle",
    "ankle",
    "apple",
    "apron",
    "arena",
    "armor",
    "arrow",
    "atlas",
    "attic",
    "autumn",
    "bacon",
    "badge",
    "baker",
    "bamboo",
    "banjo",
    "barrel",
    "basket",
    "beach",
    "beard",
    "bench",
    "berry",
    "bicycle",
    "birch",
    "bison",
    "blade",
    "blanket",
    "blossom",
    "board",
    "bottle",
    "bracket",
    "branch",
    "bread",
    "brick",
    "bridge",
    "brush",
    "bubble",
    "bucket",
    "buffalo",
    "butter",
    "cabin",
    "cactus",
    "camel",
    "canal",
    "candle",
    "canoe",
    "canvas",
    "carbon",
    "carpet",
    "carrot",
    "castle",
    "cedar",
    "cellar",
    "cement",
    "cherry",
    "chess",
    "chimney",
    "cider",
    "circle",
    "clay",
    "cliff",
    "clock",
    "cloud",
    "clover",
    "cobalt",
    "cocoa",
    "comet",
    "copper",
    "coral",
    "cotton",
    "cradle",
    "crane",
    "crayon",
    "cricket",
    "crystal",
    "cushion",
    "dagger",
    "daisy",
    "dance",
    "delta",
    "desert",
    "diamond",
    "dinner",
    "dolphin",
    "donkey",
    "dragon",
    "drum",
    "eagle",
    "earth",
    "echo",
    "elbow",
    "ember",
    "engine",
    "falcon",
    "feather",
    "fence",
    "fern",
    "fiddle",
    "finger",
    "flame",
    "flask",
    "flute",
    "forest",
    "fossil",
    "fox",
    "frost",
    "garden",
    "garlic",
    "giant",
    "ginger",
    "glacier",
    "globe",
    "goat",
    "gold",
    "grape",
    "gravel",
    "guitar",
    "hammer",
    "harbor",
    "harvest",
    "hazel",
    "helmet",
    "heron",
    "honey",
    "horizon",
    "hornet",
    "iceberg",
    "island",
    "ivory",
    "jacket",
    "jaguar",
    "jasmine",
    "jelly",
    "jigsaw",
    "jungle",
    "kettle",
    "kitten",
    "ladder",
    "lagoon",
    "lantern",
    "lemon",
    "lettuce",
    "lily",
    "lizard",
    "lobster",
    "locket",
    "lotus",
    "magnet",
    "mango",
    "maple",
    "marble",
    "meadow",
    "melon",
    "mirror",
    "mitten",
    "monkey",
    "mosaic",
    "moss",
    "napkin",
    "needle",
    "nest",
    "noodle",
    "nutmeg",
    "oasis",
    "ocean",
    "olive",
    "onion",
    "orange",
    "orchid",
    "otter",
    "owl",
    "oyster",
    "paddle",
    "palace",
    "panda",
    "paper",
    "parrot",
    "peach",
    "pebble",
    "pepper",
    "piano",
    "pillow",
    "pilot",
    "pine",
    "planet",
    "plum",
    "pocket",
    "pollen",
    "pony",
    "potato",
    "pumpkin",
    "puzzle",
    "quartz",
    "quill",
    "rabbit",
    "radio",
    "raven",
    "reef",
    "ribbon",
    "river",
    "robin",
    "rocket",
    "rope",
    "saddle",
    "salmon",
    "sandal",
    "scarf",
    "shadow",
    "shell",
    "silver",
    "sketch",
    "sleeve",
    "spider",
    "sponge",
    "spoon",
    "stamp",
    "statue",
    "stone",
    "sugar",
    "summit",
    "sunset",
    "swan",
    "table",
    "tiger",
    "timber",
    "tomato",
    "torch",
    "tractor",
    "trumpet",
    "tulip",
    "tunnel",
    "turtle",
    "valley",
    "velvet",
    "violin",
    "volcano",
    "wagon",
    "walnut",
    "walrus",
    "window",
    "winter",
    "wizard",
    "wolf",
    "yarn",
    "yogurt",
    "zebra",
    "zinc",
)
_INDEX: Final = {w[:4]: i for i, w in enumerate(WORDS)}


class RecoveryError(ValueError):
    """Words or a code that cannot be read; the message says what is wrong."""


def new_entropy() -> bytes:
    """Fresh entropy for a recovery key, from the operating system's generator."""
    return secrets.token_bytes(ENTROPY_BYTES)


def _check(entropy: bytes) -> bytes:
    return hashlib.sha256(_CHECK_DOMAIN + entropy).digest()[:CHECK_WORDS]


def words_of(entropy: bytes) -> list[str]:
    """The 18 paper words of ``entropy``: one per byte, then the two checksum words."""
    if len(entropy) != ENTROPY_BYTES:
        raise RecoveryError(f"a recovery key is made of {ENTROPY_BYTES} bytes")
    return [WORDS[b] for b in entropy + _check(entropy)]


def entropy_of(text: str) -> bytes:
    """The entropy written as paper words in ``text`` (any case and spacing; a word may be
    given by its first four letters); raises :class:`RecoveryError` for a wrong word, a
    wrong count or a checksum that does not match (a word mistyped or out of order)."""
    given = re.split(r"[\s,;.-]+", text.strip().lower())
    given = [w for w in given if w]
    want = ENTROPY_BYTES + CHECK_WORDS
    if len(given) != want:
        raise RecoveryError(f"the recovery words are {want} words, not {len(given)}")
    values = []
    for n, word in enumerate(given, start=1):
        index = _INDEX.get(word[:4])
        if index is None or not WORDS[index].startswith(word):
            raise RecoveryError(f"word {n} ({word[:20]!r}) is not one of the recovery words")
        values.append(index)
    raw = bytes(values)
    entropy, check = raw[:ENTROPY_BYTES], raw[ENTROPY_BYTES:]
    if _check(entropy) != check:
        raise RecoveryError("the recovery words do not check: a word is mistyped or misplaced")
    return entropy


def recovery_key(entropy: bytes) -> SigningKey:
    """The recovery key of ``entropy``; its public key is the person id."""
    return SigningKey(hashlib.sha256(_KEY_DOMAIN + entropy).digest())


def new_code() -> str:
    """A fresh link code: 16 characters of Crockford base32 in four groups of four."""
    value = int.from_bytes(secrets.token_bytes(CODE_BYTES), "big")
    chars = "".join(_BASE32[(value >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def code_bytes(text: str) -> bytes:
    """The 10 bytes of a link code as typed; raises :class:`RecoveryError` if it is not one."""
    chars = re.sub(r"[\s-]+", "", text).upper().translate(_LOOKALIKES)
    if len(chars) != CODE_CHARS or any(c not in _BASE32 for c in chars):
        raise RecoveryError("a link code is 16 letters and digits, such as 7KQF-3MZA-9XPD-2WHC")
    value = 0
    for c in chars:
        value = value * 32 + _BASE32.index(c)
    return value.to_bytes(CODE_BYTES, "big")
