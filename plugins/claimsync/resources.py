"""Where the shipped SQL and expectation suites are.

In a source checkout they sit at the repository's top level (sql/, expectations/);
in a built wheel they are packaged under claimsync/_resources/.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    packaged = _PACKAGE_DIR / "_resources" / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"claimsync installation is incomplete: no {name}/ directory found")


def sql_dir() -> Path:
    return _resource_dir("sql")


def query_template(system: str, name: str) -> str:
    """The query sql/<system>/<name>.sql without its comment lines.

    The comments document the file; they are never sent. Sent, they would carry whatever is
    formatted or bound into them (a {placeholder}, a %(param)s), and a bound value holding a
    line break would end the comment and turn the rest of the value into SQL.
    """
    text = (sql_dir() / system / f"{name}.sql").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")) + "\n"


def expectations_dir() -> Path:
    return _resource_dir("expectations")


def project_dir() -> Path:
    """The checkout's top level (where .claimsync/ keeps local state), or the cwd for a wheel install."""
    checkout = _PACKAGE_DIR.parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()
