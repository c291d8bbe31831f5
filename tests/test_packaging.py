"""What the wheel holds: every package folder and every config group, named in pyproject.toml."""
import tomllib

from tests.conftest import ROOT


def test_pyproject_lists_every_package_and_config_folder():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    code = {".".join(p.relative_to(ROOT).parts[:-1]) for p in (ROOT / "compressor").rglob("__init__.py")}
    conf = {"compressor.conf", *("compressor.conf." + ".".join(p.relative_to(ROOT / "conf").parts)
                                 for p in (ROOT / "conf").rglob("*") if p.is_dir() and p.name != "__pycache__")}
    assert set(setup["packages"]) == code | conf  # a folder left out: missing from the wheel, and a warning
    assert {k for k, v in setup["package-data"].items() if "*.yaml" in v} == conf


def test_the_readme_is_short_and_its_links_lead_to_files():
    """The README is the five-minute start (issue 42: at most ~250 lines); the manual is docs/, which
    `make docs` builds strictly. mkdocs does not read the README, so its own links are checked here."""
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 10
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, missing
