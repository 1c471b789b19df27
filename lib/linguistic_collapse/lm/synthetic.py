"""A synthetic TinyStories-like corpus for the offline ``smoke`` profile and the tests.

Lowercased template stories of 3-6 sentences with a cast (first names), animals, objects and
places: tiny models learn it in seconds, and it has first names for the token analysis.
"""

from __future__ import annotations

import numpy as np

_GIRLS = ("lily", "mia", "sara", "emma", "anna", "lucy", "amy", "zoe", "ella", "kate", "molly",
          "sue", "alice", "jane")
_BOYS = ("tom", "ben", "max", "sam", "jack", "tim", "leo", "joe", "bob", "jake", "finn", "adam",
         "nick")
_ANIMALS = ("dog", "cat", "bird", "bunny", "frog", "duck", "puppy", "kitten", "fish", "bear",
            "horse", "mouse")
_OBJECTS = ("ball", "kite", "toy car", "doll", "book", "hat", "box", "boat", "drum", "cake",
            "flower", "teddy bear", "balloon", "shovel")
_COLORS = ("red", "blue", "yellow", "green", "pink", "big", "little", "shiny", "soft")
_PLACES = ("park", "garden", "forest", "beach", "school", "lake", "farm", "house", "hill", "river")
_FEELINGS = ("happy", "sad", "scared", "excited", "proud", "angry", "tired", "surprised")
_VERBS = ("play", "run", "jump", "dance", "sing", "swim", "read", "draw", "climb")

_OPENINGS = (
    "once upon a time, there was a little {kid} named {name}.",
    "{name} was a {kid} who loved to {verb}.",
    "one day, a {kid} named {name} went to the {place}.",
)
_MIDDLES = (  # slots in story order; a story uses an ordered subset, one template per slot
    ("{name} had a {color} {object}.", "{pron} loved {pos} {color} {object} very much."),
    ("one day, {name} went to the {place} with {pos} {animal}.",
     "at the {place}, {name} saw a {animal} that was {feeling}."),
    ("{name} met {friend} and they played with the {object}.",
     "{friend} said, \"can i {verb} with you, {name}?\""),
    ("then the {object} got lost and {name} felt {feeling}.",
     "{name} said, \"let us {verb} together!\""),
    ("{friend} helped {name} find the {object}.", "the {animal} wanted to {verb} too."),
)
_ENDINGS = (
    "{name} and {friend} were very {feeling2}.",
    "they played all day and became best friends.",
    "from that day on, {name} always shared {pos} {object} with {friend}.",
)


def _pick(rng: np.random.Generator, options: tuple) -> str:
    return options[int(rng.integers(len(options)))]


def _story_context(rng: np.random.Generator) -> dict[str, str]:
    """The cast and props of one story, drawn once so that its sentences agree."""
    girl = bool(rng.integers(2))
    name = _pick(rng, _GIRLS if girl else _BOYS)
    friend = _pick(rng, tuple(n for n in _GIRLS + _BOYS if n != name))
    return {
        "name": name, "friend": friend, "kid": "girl" if girl else "boy",
        "pron": "she" if girl else "he", "pos": "her" if girl else "his",
        "animal": _pick(rng, _ANIMALS), "object": _pick(rng, _OBJECTS),
        "color": _pick(rng, _COLORS), "place": _pick(rng, _PLACES),
        "feeling": _pick(rng, _FEELINGS), "feeling2": _pick(rng, _FEELINGS),
        "verb": _pick(rng, _VERBS),
    }


def _generate_story(rng: np.random.Generator) -> str:
    ctx = _story_context(rng)
    n_middle = int(rng.integers(1, 5))  # 3-6 sentences in all
    slots = np.sort(rng.choice(len(_MIDDLES), size=n_middle, replace=False))
    sentences = [_pick(rng, _OPENINGS)] + [_pick(rng, _MIDDLES[s]) for s in slots]
    sentences.append(_pick(rng, _ENDINGS))
    return " ".join(s.format(**ctx) for s in sentences)


def generate_corpus(n_stories: int, seed: int = 0) -> list[str]:
    """``n_stories`` lowercased template stories (3-6 sentences); same seed -> same text.

    Stories are drawn one after another from one generator, so a shorter corpus is a prefix
    of a longer one with the same seed.
    """
    if n_stories < 1:
        raise ValueError(f"n_stories must be at least 1, got {n_stories}")
    rng = np.random.default_rng(seed)
    return [_generate_story(rng) for _ in range(n_stories)]
