"""Where the tests find native TTK's reference outputs (``tests/data/ttk-reference``, see its README)."""

from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "data" / "ttk-reference"
FIELDS = REFERENCE / "fields"
TTK_1_2 = REFERENCE / "ttk-1.2"
