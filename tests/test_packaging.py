"""What the wheel holds (every module and config file), and the README's length and links."""

import zipfile

from tests.conftest import ROOT, build_wheel


def test_the_wheel_holds_every_package_and_config_file(tmp_path):
    """Packages are found, not listed (a new technique touches no shared file): the wheel built from a
    copy of the checkout holds every module under compressor/ and every file of conf/, the latter as
    compressor/conf (a link in the checkout), where the installed command looks for them."""
    assert (ROOT / "compressor" / "conf").is_symlink()
    wheel = build_wheel(tmp_path)
    held = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("compressor-")}
    code = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "compressor").rglob("*.py")
        if "__pycache__" not in p.parts and p.parts[len(ROOT.parts) + 1] != "conf"
    }
    conf = {"compressor/" + p.relative_to(ROOT).as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert len(conf) > 50 and len(code) > 80
    assert held == code | conf, sorted(held ^ (code | conf))


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
