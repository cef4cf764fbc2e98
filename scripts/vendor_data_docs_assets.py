"""Fetch the CSS/JS/fonts that Great Expectations' Data Docs pages load from CDNs, once, into the package.

Run by a maintainer when GX's templates change, never at run time: perennial ships the files it
downloads here (src/perennial/reporting/data_docs_assets/) so Data Docs render styled with no network.
Every file comes from the npm registry tarball of the exact package version GX's templates name,
and each package's licence file is kept beside it where the package has one (its
SPDX licence is in MANIFEST.json either way). MANIFEST.json records the source and sha256.

    python scripts/vendor_data_docs_assets.py
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "src" / "perennial" / "reporting" / "data_docs_assets"
REGISTRY = "https://registry.npmjs.org"

_FILTER = "bootstrap-table-filter-control"
# (npm package, version, {path in tarball: path under TARGET})
PACKAGES: list[tuple[str, str, dict[str, str]]] = [
    (
        "bootstrap",
        "4.3.1",
        {
            "dist/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
            "dist/js/bootstrap.min.js": "bootstrap/bootstrap.min.js",
            "LICENSE": "bootstrap/LICENSE",
        },
    ),
    ("jquery", "3.7.1", {"dist/jquery.min.js": "jquery/jquery.min.js", "LICENSE.txt": "jquery/LICENSE.txt"}),
    ("popper.js", "1.12.9", {"dist/umd/popper.min.js": "popper/popper.min.js"}),
    (
        "bootstrap-table",
        "1.19.1",
        {
            "dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
            "dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
            f"dist/extensions/filter-control/{_FILTER}.min.css": f"bootstrap-table/{_FILTER}.min.css",
            f"dist/extensions/filter-control/{_FILTER}.min.js": f"bootstrap-table/{_FILTER}.min.js",
            "LICENSE": "bootstrap-table/LICENSE",
        },
    ),
    (
        "bootstrap-datepicker",
        "1.9.0",
        {
            "dist/css/bootstrap-datepicker.min.css": "bootstrap-datepicker/bootstrap-datepicker.min.css",
            "dist/js/bootstrap-datepicker.min.js": "bootstrap-datepicker/bootstrap-datepicker.min.js",
            "LICENSE": "bootstrap-datepicker/LICENSE",
        },
    ),
    (
        "@forevolve/bootstrap-dark",
        "1.1.0",
        {
            "dist/css/bootstrap-prefers-dark.min.css": "bootstrap-dark/bootstrap-prefers-dark.min.css",
            "LICENSE": "bootstrap-dark/LICENSE",
        },
    ),
    (
        "@fortawesome/fontawesome-free",
        "6.6.0",
        {
            "css/all.min.css": "fontawesome/css/all.min.css",
            "webfonts/fa-brands-400.woff2": "fontawesome/webfonts/fa-brands-400.woff2",
            "webfonts/fa-regular-400.woff2": "fontawesome/webfonts/fa-regular-400.woff2",
            "webfonts/fa-solid-900.woff2": "fontawesome/webfonts/fa-solid-900.woff2",
            "webfonts/fa-v4compatibility.woff2": "fontawesome/webfonts/fa-v4compatibility.woff2",
            "LICENSE.txt": "fontawesome/LICENSE.txt",
        },
    ),
    ("vega", "5.33.1", {"build/vega.min.js": "vega/vega.min.js"}),
    (
        "vega-lite",
        "5.23.0",
        {"build/vega-lite.min.js": "vega/vega-lite.min.js", "LICENSE": "vega/LICENSE-vega-lite"},
    ),
    (
        "vega-embed",
        "6.29.0",
        {"build/vega-embed.min.js": "vega/vega-embed.min.js", "LICENSE": "vega/LICENSE-vega-embed"},
    ),
]


def _tarball(package: str, version: str) -> tarfile.TarFile:
    with urllib.request.urlopen(f"{REGISTRY}/{package}/{version}", timeout=60) as response:
        url = json.load(response)["dist"]["tarball"]
    with urllib.request.urlopen(url, timeout=120) as response:
        return tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:gz")


def main() -> None:
    manifest = {}
    for package, version, files in PACKAGES:
        archive = _tarball(package, version)
        about = json.load(archive.extractfile("package/package.json"))
        for source, target in files.items():
            member = archive.extractfile(f"package/{source}")
            if member is None:
                raise SystemExit(f"{package}@{version} has no {source}")
            data = member.read()
            path = TARGET / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            manifest[target] = {
                "npm": f"{package}@{version}",
                "file": source,
                "license": about.get("license", "see the package"),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        print(f"{package}@{version}: {len(files)} files")
    (TARGET / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
