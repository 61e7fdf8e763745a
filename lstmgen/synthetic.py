"""Text that lstmgen generates itself: the bundled prose corpus and structured corpora.

``prose`` writes short tales in plain English from a small grammar: named characters, places,
weather, travel, quoted dialogue, paragraphs. It has the statistics a character model learns
in minutes (spelling, spacing, capitals after full stops, paired quotes) and nothing copied.

``structured`` writes text whose structure is known exactly, for tests and ``inspect``:
nested brackets with their depth, quoted speech, and lines of bounded length.

``cjk`` writes a large-vocabulary text: CJK ideographs with Zipf-distributed frequencies,
full-width commas and full stops, and line breaks.
"""

from __future__ import annotations

import random

NAMES = ["Ada", "Bram", "Cora", "Dov", "Elin", "Fenn", "Gita", "Hal", "Iris", "Joss", "Kai", "Lena",
         "Milo", "Nora", "Otto", "Pia", "Quin", "Rosa", "Sven", "Tova", "Ulla", "Vik", "Wren", "Yara"]
PLACES = ["the harbour", "the old mill", "the market", "the north road", "the river ford", "the hill fort",
          "the orchard", "the lighthouse", "the salt flats", "the forest edge", "the bridge", "the inn",
          "the library", "the quarry", "the ferry landing", "the high pasture"]
THINGS = ["a lantern", "a map", "a letter", "a key", "a loaf of bread", "a coil of rope", "a compass",
          "a blue coat", "a bag of apples", "a small boat", "a wooden box", "a bell", "a kettle",
          "a book of songs", "a pair of boots", "a sealed jar"]
WEATHER = ["The rain had stopped by morning.", "A cold wind came down from the hills.",
           "The sun was low and the air was still.", "Fog lay over the water until noon.",
           "It was the first warm day of spring.", "Snow fell quietly all afternoon.",
           "The sky was clear and full of stars.", "Thunder rolled somewhere to the west."]
VERBS = ["walked to", "ran to", "rode to", "hurried to", "wandered to", "returned to", "climbed to",
         "sailed to"]
FEELINGS = ["tired", "glad", "worried", "hungry", "curious", "cold", "certain", "afraid", "restless",
            "hopeful"]
ADVERBS = ["slowly", "quickly", "quietly", "at once", "without a word", "with a smile", "again",
           "carefully"]
SAYS = ["said", "asked", "answered", "whispered", "called", "replied", "laughed", "muttered"]
QUESTIONS = ["Where are you going?", "Have you seen {thing}?", "Is the road to {place} open?",
             "Who left {thing} by the door?", "What time is it?", "Will you come with me?",
             "Why are you {feeling}?", "Did {name} find {thing}?"]
STATEMENTS = ["I am {feeling} today.", "We should go to {place} before dark.", "{name} has {thing}.",
              "The road is long, but we will get there.", "I found {thing} near {place}.",
              "Nobody goes to {place} in winter.", "Let us wait until the morning.",
              "I have never seen {place} so empty."]


def _fill(rng: random.Random, template: str) -> str:
    return template.format(name=rng.choice(NAMES), place=rng.choice(PLACES), thing=rng.choice(THINGS),
                           feeling=rng.choice(FEELINGS))


def _sentence(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    kind = rng.random()
    if kind < 0.25:
        return f"{a} {rng.choice(VERBS)} {rng.choice(PLACES)} {rng.choice(ADVERBS)}."
    if kind < 0.45:
        return f"{a} gave {b} {rng.choice(THINGS)}, and {b} was {rng.choice(FEELINGS)}."
    if kind < 0.6:
        return rng.choice(WEATHER)
    if kind < 0.8:
        line = _fill(rng, rng.choice(QUESTIONS if rng.random() < 0.5 else STATEMENTS))
        return f"\"{line}\" {rng.choice(SAYS)} {a}."
    if kind < 0.9:
        return f"At {rng.choice(PLACES)}, {a} met {b}, who carried {rng.choice(THINGS)}."
    return f"{a} felt {rng.choice(FEELINGS)} and looked toward {rng.choice(PLACES)}."


def prose(n_chars: int, seed: int = 0) -> str:
    """About n_chars of tales: titled chapters of paragraphs wrapped at 72 columns."""
    rng = random.Random(seed)
    parts, size, chapter = [], 0, 1
    while size < n_chars:
        paras = [f"Chapter {chapter}\n"]
        for _ in range(rng.randint(4, 9)):
            words = " ".join(_sentence(rng) for _ in range(rng.randint(2, 6))).split(" ")
            lines, line = [], ""
            for w in words:
                if line and len(line) + 1 + len(w) > 72:
                    lines.append(line)
                    line = w
                else:
                    line = f"{line} {w}" if line else w
            lines.append(line)
            paras.append("\n".join(lines) + "\n")
        block = "\n".join(paras) + "\n"
        parts.append(block)
        size += len(block)
        chapter += 1
    return "".join(parts)


def _brackets(rng: random.Random, depth: int = 0) -> str:
    if depth > 4 or rng.random() < 0.3 + 0.12 * depth:
        return rng.choice(["x", "y", "z", "1", "2", "ab", "cd"])
    items = [_brackets(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return "(" + " ".join(items) + ")"


def structured(n_chars: int, seed: int = 0) -> str:
    """Lines of three kinds, each with structure a unit can track:

    - ``expr: (a (b c) d)`` nested brackets up to depth 5;
    - ``Name said "..."`` quoted speech spanning several words;
    - ``line: ...`` plain words with lengths from 10 to 60 characters (line position).
    """
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        r = rng.random()
        if r < 0.35:
            line = "expr: " + _brackets(rng)
        elif r < 0.7:
            a = rng.choice(NAMES)
            words = _fill(rng, rng.choice(STATEMENTS + QUESTIONS))
            line = f"{a} {rng.choice(SAYS)} \"{words}\" and left."
        else:
            target = rng.randint(10, 60)
            words = []
            while len(" ".join(words)) < target:
                words.append(rng.choice(["go", "stop", "tree", "stone", "river", "cloud", "a", "the",
                                         "small", "bright", "under", "over"]))
            line = "line: " + " ".join(words)
        out.append(line + "\n")
        size += len(line) + 1
    return "".join(out)


def cjk(n_chars: int, n_distinct: int = 5000, seed: int = 0) -> str:
    """About n_chars of CJK-like text over ~n_distinct ideographs (U+4E00 onwards), Zipf-distributed,
    so that a model sees a large vocabulary whose rare characters really are rare."""
    import numpy as np

    rng = np.random.default_rng(seed)
    glyphs = np.array([chr(0x4E00 + i) for i in range(n_distinct)])
    weights = 1.0 / np.arange(1, n_distinct + 1) ** 0.9
    chars = glyphs[rng.choice(n_distinct, size=n_chars, p=weights / weights.sum())]
    ends = rng.random(n_chars)  # after each character: nothing, a comma, a full stop, a line break
    out = []
    for ch, e in zip(chars.tolist(), ends.tolist()):
        out.append(ch)
        if e < 0.08:
            out.append("，" if e < 0.05 else "。" if e < 0.075 else "。\n")
    return "".join(out)[:n_chars]
