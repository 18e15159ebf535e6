"""Writes the bundled sample corpora from small grammars; run it to regenerate them byte for byte:

    python sample_corpora/make_corpora.py

Everything here was written for rnncli. The grammars are small on purpose: a model learns their
words, layout and rhythm within a minute of training, so its samples are recognisable.
"""

import random
from pathlib import Path

HERE = Path(__file__).parent

DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
PARTS = ["morning", "afternoon", "evening", "night"]
PLACES = [
    "Northport",
    "Eastmere",
    "Kingsbridge",
    "Saltash Bay",
    "the Upper Valley",
    "Harrowgate",
    "the Western Isles",
    "Millbrook",
    "Stonehaven",
    "the Lowlands",
    "Fairhaven",
    "Redcliff",
]
SKIES = [
    "clear skies",
    "patchy cloud",
    "light rain",
    "heavy showers",
    "thick fog",
    "scattered showers",
    "bright sunshine",
    "low cloud",
    "drizzle",
    "sleet",
    "thunderstorms",
    "a light frost",
]
LATER = [
    "clearing by noon",
    "spreading east later",
    "turning brighter",
    "dying out by evening",
    "becoming heavier overnight",
    "with sunny spells",
    "lifting slowly",
    "easing later",
]
DIRS = ["north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"]
SEAS = ["smooth", "slight", "moderate", "rough", "very rough"]

NAMES = [
    "MARGARET",
    "THOMAS",
    "ELEANOR",
    "HUGH",
    "AGNES",
    "ROBERT",
    "CECILY",
    "WALTER",
    "THE KEEPER",
    "A FERRYMAN",
]
OPENERS = ["Good", "Alas", "Hark", "Nay", "Come", "Peace", "Soft", "Look", "Hear me", "Away"]
SUBJECTS = [
    "the tide",
    "my father",
    "the lantern",
    "this house",
    "the king",
    "your letter",
    "the ferry",
    "the old road",
    "my heart",
    "the harbour bell",
    "our wager",
    "the winter",
]
VERBS = [
    "is turning",
    "was broken",
    "will not wait",
    "has gone cold",
    "comes at dawn",
    "shall be mended",
    "keeps its counsel",
    "is not what it seems",
    "was sold at market",
    "must be answered",
]
ENDS = [
    "and I am weary of it",
    "and so we part",
    "though no one listens",
    "before the candles fail",
    "as surely as the rain",
    "if you will hear me",
    "and there's an end",
    "by my faith",
]
STAGE = ["Enter", "Exit", "Exeunt all but", "Re-enter"]

FOODS = [
    "onion",
    "garlic",
    "carrot",
    "potato",
    "leek",
    "lentils",
    "rice",
    "barley",
    "mushrooms",
    "spinach",
    "tomatoes",
    "chickpeas",
    "butter",
    "flour",
    "milk",
    "cheese",
    "apples",
    "honey",
    "oats",
    "beans",
]
DISHES = ["soup", "stew", "pie", "bake", "porridge", "salad", "risotto", "fritters", "crumble", "bread"]
UNITS = ["g", "ml", "tbsp", "tsp", "cups", "whole"]
STEPS = [
    "Chop the {a} and the {b}.",
    "Warm the {a} in a pan for {n} minutes.",
    "Stir in the {a}.",
    "Simmer gently for {n} minutes, stirring now and then.",
    "Season with salt and pepper.",
    "Bake at {t} degrees for {n} minutes.",
    "Mash the {a} with the {b}.",
    "Leave to rest for {n} minutes.",
    "Fold the {a} into the {b}.",
    "Serve warm with the {a}.",
]


def forecasts(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        lo = rng.randint(-3, 15)
        wind = rng.randint(5, 30)
        out.append(
            f"{rng.choice(DAYS)} {rng.choice(PARTS)} in {rng.choice(PLACES)}: {rng.choice(SKIES)}, "
            f"{rng.choice(LATER)}. Wind {rng.choice(DIRS)} {wind} to {wind + rng.choice([5, 10])} knots. "
            f"Sea {rng.choice(SEAS)}. High {lo + rng.randint(3, 12)}, low {lo}.\n"
        )
    return "".join(out)


def dialogues(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        if rng.random() < 0.08:
            out.append(f"[{rng.choice(STAGE)} {rng.choice(NAMES).title()}.]\n\n")
            continue
        lines = [f"{rng.choice(OPENERS)}, {rng.choice(SUBJECTS)} {rng.choice(VERBS)},"]
        for _ in range(rng.randint(0, 2)):
            lines.append(f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)},")
        lines.append(f"{rng.choice(ENDS)}{rng.choice(['.', '!', '?', '.'])}")
        out.append(f"{rng.choice(NAMES)}:\n" + "\n".join(lines) + "\n\n")
    return "".join(out)


def recipes(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        a, b = rng.sample(FOODS, 2)
        out.append(f"{a.capitalize()} and {b} {rng.choice(DISHES)}\nServes {rng.randint(2, 8)}.\n")
        for food in rng.sample(FOODS, rng.randint(3, 6)):
            unit = rng.choice(UNITS)
            qty = rng.randint(1, 4) if unit in ("tbsp", "tsp", "cups", "whole") else 50 * rng.randint(1, 10)
            out.append(f"- {qty} {unit} {food}\n")
        for i, step in enumerate(rng.sample(STEPS, rng.randint(3, 5)), 1):
            x, y = rng.sample(FOODS, 2)
            out.append(
                f"{i}. "
                + step.format(
                    a=x, b=y, n=rng.choice([5, 10, 15, 20, 30, 45]), t=rng.choice([160, 180, 200, 220])
                )
                + "\n"
            )
        out.append("\n")
    return "".join(out)


if __name__ == "__main__":
    for name, make, n in [
        ("forecasts.txt", forecasts, 1500),
        ("dialogues.txt", dialogues, 1800),
        ("recipes.txt", recipes, 700),
    ]:
        text = make(random.Random(name), n)
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(text):,} characters")
