"""What the wheel holds (every module and config file), and the README's length and links."""
import shutil
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_the_wheel_holds_every_package_and_config_file(tmp_path):
    """Packages are found, not listed (a new technique touches no shared file): the wheel built from a
    copy of the checkout holds every module under compressor/ and every file of conf/, the latter as
    compressor/conf (a link in the checkout), where the installed command looks for them."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("compressor", "conf"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert (src / "compressor" / "conf").is_symlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(src), "-w", str(tmp_path / "wheel")], check=True, cwd=src, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    held = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("compressor-")}
    code = {p.relative_to(ROOT).as_posix() for p in (ROOT / "compressor").rglob("*.py")
            if "__pycache__" not in p.parts and p.parts[len(ROOT.parts) + 1] != "conf"}
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
