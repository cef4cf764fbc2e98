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


if __name__ == "__main__":
    batch("reviews", 80, 1).to_csv(HERE / "reviews.csv", index=False)
    films = batch("films", 80, 2)
    films.to_json(HERE / "films.jsonl", orient="records", lines=True)
    bad = batch("reviews", 40, 3)
    bad.loc[[3, 7, 11], "label"] = "neutral"
    bad.loc[5, "text"] = "   "
    bad.to_csv(HERE / "bad_labels.csv", index=False)
