"""Regenerate the small committed fixture batches (deterministic): python tests/data/make_fixtures.py"""

import random
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "delightful", "brilliant", "fantastic"]
NEGATIVE = ["awful", "terrible", "horrible", "dreadful", "boring", "broken", "useless", "disappointing"]
TOPICS = {
    "reviews": ["the battery", "this blender", "the delivery", "the screen", "the packaging", "this charger"],
    "films": ["the plot", "the acting", "the soundtrack", "the ending", "the director", "the dialogue"],
}


def batch(domain: str, rows: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    records = []
    for i in range(rows):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        subject = rng.choice(TOPICS[domain])
        records.append(
            {"id": f"{domain}-{i}", "domain": domain, "text": f"{subject} was {word} #{i}", "label": label}
        )
    return pd.DataFrame(records)


def dated(rows: int, seed: int) -> pd.DataFrame:
    """Reviews with a `created_at` over 14 months, April and August 2024 empty, in shuffled order,
    dates in two styles; 2024-12-30 belongs to ISO week 2025-W01."""
    rng = random.Random(seed)
    months = [(2024, m) for m in range(1, 13) if m not in (4, 8)] + [(2025, 1), (2025, 2)]
    records = []
    for i in range(rows):
        year, month = (2024, 12) if i == rows - 1 else months[i % len(months)]
        day = 30 if i == rows - 1 else rng.randint(1, 28)
        stamp = f"{year}-{month:02d}-{day:02d}"
        if i % 2:
            stamp += f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        records.append(
            {"text": f"{rng.choice(TOPICS['reviews'])} was {word} #{i}", "label": label, "created_at": stamp}
        )
    rng.shuffle(records)
    return pd.DataFrame(records)


if __name__ == "__main__":
    batch("reviews", 80, 1).to_csv(HERE / "reviews.csv", index=False)
    films = batch("films", 80, 2)
    films.to_json(HERE / "films.jsonl", orient="records", lines=True)
    bad = batch("reviews", 40, 3)
    bad.loc[[3, 7, 11], "label"] = "neutral"
    bad.loc[5, "text"] = "   "
    bad.to_csv(HERE / "bad_labels.csv", index=False)
    dated(40, 4).to_csv(HERE / "dated.csv", index=False)
