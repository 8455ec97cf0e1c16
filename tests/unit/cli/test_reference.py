"""The README's configuration reference is generated from hbfork.core.config and must match it."""

from pathlib import Path

from hbfork.cli import reference
from hbfork.core.config import reference_rows

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_reference_is_current():
    text = README.read_text()
    assert reference.update(text) == text, "run: python -m hbfork.cli.reference"


def test_every_setting_is_documented():
    block = reference.markdown()
    for section, key, _default, help_text in reference_rows():
        assert f"| `{key}` |" in block, (section, key)
        assert help_text.strip(), (section, key)
