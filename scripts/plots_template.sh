#!/usr/bin/env bash
# Build scripts/dvc_plots_template.html: DVC's plots page (dvc_render's default) with vega, vega-lite and
# vega-embed inlined instead of loaded from a CDN, so `dvc plots show` draws offline. .dvc/config points DVC at
# it (`dvc config plots.html_template ../scripts/dvc_plots_template.html`). The versions are the ones
# dvc-render 1.0.2 loads (dvc_render/vega.py); npm checks each package against the registry's integrity hash,
# and the page records the sha256 of each inlined file. The template has no {scripts} placeholder, so DVC adds
# no CDN <script> tags to it. Run it again only to change versions (needs npm); the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for pkg in vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2; do
  (cd "$tmp" && npm pack --silent "$pkg" > /dev/null)
done
python3 - "$tmp" scripts/dvc_plots_template.html <<'PY'
import hashlib
import sys
import tarfile
from pathlib import Path

tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
scripts, notes = [], []
for tgz, name in (("vega-5.20.2.tgz", "vega.min.js"), ("vega-lite-5.2.0.tgz", "vega-lite.min.js"),
                  ("vega-embed-6.18.2.tgz", "vega-embed.min.js")):
    with tarfile.open(tmp / tgz) as tar:
        js = tar.extractfile(f"package/build/{name}").read().decode("utf-8")
    if "</script" in js or "{plot_divs}" in js or "{refresh_tag}" in js:
        sys.exit(f"{tgz}: {name} cannot be inlined as it is")
    package = tgz.removesuffix(".tgz")
    notes.append(f"{package} build/{name} sha256 {hashlib.sha256(js.encode()).hexdigest()}")
    scripts.append(f"<script>/* {package} (BSD-3-Clause, UW Interactive Data Lab) */\n{js}\n</script>")
out.write_text("""<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Built by scripts/plots_template.sh from the npm registry's packages:
         %s -->
    %s
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
""" % ("\n         ".join(notes), "\n    ".join(scripts)), encoding="utf-8")
print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
PY
