"""The configuration reference (docs/configuration.md) is generated from hbfork.core.config and
must match it."""

from pathlib import Path

from hbfork.cli import reference
from hbfork.core.config import reference_rows

PAGE = Path(__file__).resolve().parents[3] / reference.PAGE


def test_configuration_reference_is_current():
    text = PAGE.read_text()
    assert reference.update(text) == text, "run: python -m hbfork.cli.reference"


def test_every_setting_is_documented():
    block = reference.markdown()
    for section, key, _default, help_text in reference_rows():
        assert f"| `{key}` |" in block, (section, key)
        assert help_text.strip(), (section, key)


def test_the_reference_is_on_its_page_once():
    text = PAGE.read_text()
    assert text.count(reference.BEGIN) == text.count(reference.END) == 1
    readme = PAGE.parents[1] / "README.md"
    assert reference.BEGIN not in readme.read_text()  # one copy, the manual's


def test_check_says_whether_the_page_is_current(capsys):
    assert reference.main(["--check"]) == 0
    assert capsys.readouterr().out == ""


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(f"{reference.BEGIN}\n| `listen` | `[]` | old |\n{reference.END}\n")
    monkeypatch.setattr(reference, "PAGE", stale)  # an absolute path replaces the tree's
    assert reference.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert reference.main([]) == 0
    assert reference.update(stale.read_text()) == stale.read_text()
